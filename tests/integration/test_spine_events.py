"""POST /v1/orders/{order_id}/events: every event type, lifecycle refusals through the API, CoI
mismatch and the safety log, DIN checks, duplicates, and that refusals change nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from gateway.store.tables import EventRow, OrderRow, SafetyLogRow
from tests.conftest import (
    ACME,
    ACME_COI,
    ADMIN,
    NOVA,
    NOVA_COI,
    SITE_A,
    event_body,
    nova_order_body,
    order_body,
)

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def at(**delta: float) -> str:
    return (T0 + timedelta(**delta)).isoformat().replace("+00:00", "Z")


MEAS = [
    {"code": "tnc_count", "value": 5.2, "unit": "10*9"},
    {"code": "viability_pct", "value": 96, "unit": "%"},
]
RESULTS = [
    {"code": "sterility", "value": "negative", "specification": "negative"},
    {"code": "car_positive_pct", "value": 41.5, "unit": "%", "specification": ">=20"},
]

HAPPY_PATH = [
    ("order.confirmed", at(hours=1), {"slot_id": "SLOT-7"}, "confirmed"),
    (
        "apheresis.scheduled",
        at(hours=2),
        {"start": at(days=5), "end": at(days=5, hours=4), "location": "Apheresis unit"},
        "apheresis_scheduled",
    ),
    (
        "apheresis.rescheduled",
        at(hours=3),
        {"start": at(days=6), "reason": "patient request"},
        "apheresis_scheduled",
    ),
    (
        "collection.completed",
        at(days=6, hours=5),
        {"collected_at": at(days=6, hours=4), "din": "A999921123456", "measurements": MEAS},
        "collected",
    ),
    (
        "custody.transferred",
        at(days=6, hours=6),
        {
            "from_party": "site-a",
            "to_party": "acme-bio courier",
            "at": at(days=6, hours=6),
            "temperature_c": -150.5,
            "container_id": "DEWAR-1",
        },
        "collected",
    ),
    ("manufacturing.started", at(days=7), {"lot": "LOT-1"}, "manufacturing"),
    ("manufacturing.completed", at(days=20), {"lot": "LOT-1", "expires_at": at(days=200)}, "manufactured"),
    ("release.passed", at(days=21), {"results": RESULTS}, "released"),
    (
        "shipment.dispatched",
        at(days=22),
        {"carrier": "CryoPort", "tracking_number": "TRK1", "expected_at": at(days=23)},
        "shipped",
    ),
    ("shipment.received", at(days=23), {"received_at": at(days=23), "temperature_c": -160}, "received"),
    ("infusion.scheduled", at(days=23, hours=1), {"start": at(days=25)}, "infusion_scheduled"),
    ("product.infused", at(days=25, hours=2), {"infused_at": at(days=25, hours=1)}, "infused"),
]


@pytest.fixture
def acme(client, clock):
    clock.set(T0)
    assert client.post("/v1/orders", json=order_body(), headers=ACME).status_code == 201
    clock.set(T0 + timedelta(days=30))  # the events below are posted once they happened (plausible times)
    return client


def post(client, event, order_id="ORD-1", headers=ACME):
    return client.post(f"/v1/orders/{order_id}/events", json=event, headers=headers)


def walk(client, steps, order_id="ORD-1"):
    for i, (type_, occurred, data, status) in enumerate(steps):
        r = post(client, event_body(f"E{i}", type_, occurred, data), order_id)
        assert r.status_code == 201, (type_, r.text)
        assert r.json()["status_after"] == status


def problem(response, status, code):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code, body
    return body


def snapshot(engine):
    with Session(engine) as session:
        orders = [(o.status, o.state, o.last_sequence) for o in session.exec(select(OrderRow)).all()]
        events = [e.event_id for e in session.exec(select(EventRow)).all()]
    return orders, events


def test_every_event_type_on_the_happy_path(acme, engine, clock):
    clock.set(T0 + timedelta(days=30))
    walk(acme, HAPPY_PATH)
    order = acme.get("/v1/orders/ORD-1", headers=ACME).json()
    assert order["status"] == "infused"
    assert [e["type"] for e in order["timeline"]] == ["order.placed"] + [s[0] for s in HAPPY_PATH]
    assert [e["sequence"] for e in order["timeline"]] == list(range(len(HAPPY_PATH) + 1))
    assert not any(e["late"] for e in order["timeline"])
    collected = order["timeline"][4]
    assert collected["data"]["din"] == "A9999211234563"  # normal form: with check character
    assert order["state"]["expires_at"].startswith("2027-05-20")
    task = next(ref for ref in order["fhir_resources"] if ref["resourceType"] == "Task")
    assert int(task["versionId"]) > 1  # the Task followed the events


def test_event_answer_and_identical_replay(acme, engine):
    event = event_body("E1", "order.confirmed", at(hours=1), {"slot_id": "S1"})
    first = post(acme, event)
    assert first.status_code == 201
    body = first.json()
    assert body["event_id"] == "E1" and body["sequence"] == 1 and body["late"] is False
    assert body["status_after"] == "confirmed" and body["order_id"] == "ORD-1"
    before = snapshot(engine)
    replay = post(acme, event)
    assert replay.status_code == 200 and replay.json() == body
    assert snapshot(engine) == before


def test_same_event_id_different_body_is_409(acme, engine):
    post(acme, event_body("E1", "order.confirmed", at(hours=1), {"slot_id": "S1"}))
    before = snapshot(engine)
    r = post(acme, event_body("E1", "order.confirmed", at(hours=1), {"slot_id": "S2"}))
    assert problem(r, 409, "duplicate-event")["errors"][0]["pointer"] == "/event_id"
    assert snapshot(engine) == before


def test_event_id_is_unique_per_manufacturer_across_orders(acme, engine):
    assert acme.post("/v1/orders", json=order_body("ORD-2"), headers=ACME).status_code == 201
    event = event_body("E1", "order.confirmed", at(hours=1))
    assert post(acme, event).status_code == 201
    problem(post(acme, event, "ORD-2"), 409, "duplicate-event")


def test_coi_mismatch_is_refused_logged_and_visible_to_admins(acme, engine):
    before = snapshot(engine)
    other = "CHA999923A1B2C4"  # valid structure, different sequence
    r = post(acme, {**event_body("E1", "order.confirmed", at(hours=1)), "coi": other})
    body = problem(r, 422, "coi-mismatch")
    assert body["errors"][0]["pointer"] == "/coi"
    assert snapshot(engine) == before
    log = acme.get("/v1/admin/safety-log", headers=ADMIN)
    assert log.status_code == 200
    (entry,) = log.json()["items"]
    assert entry["code"] == "coi-mismatch" and entry["order_id"] == "ORD-1" and entry["event_id"] == "E1"
    assert entry["expected_coi"] == ACME_COI and entry["presented_coi"].startswith("CHA999923A1B2C4")
    assert acme.get("/v1/admin/safety-log", headers=ACME).status_code == 403
    assert acme.get("/v1/admin/safety-log", headers=SITE_A).status_code == 403


def test_unparseable_coi_is_a_mismatch_too(acme, engine):
    r = post(acme, {**event_body("E1", "order.confirmed", at(hours=1)), "coi": "garbage"})
    problem(r, 422, "coi-mismatch")
    with Session(engine) as session:
        assert len(session.exec(select(SafetyLogRow)).all()) == 1


def test_coi_is_compared_in_normal_form(acme):
    for i, coi in enumerate(["CHA999923A1B2C3", "&/CHA999923A1B2C3M", " CHA999923A1B2C3M "]):
        r = post(acme, {**event_body(f"E{i}", "order.confirmed", at(hours=1 + i)), "coi": coi})
        assert r.status_code == 201, r.text


def test_manufacturer_format_coi_must_match_the_order(client, clock):
    clock.set(T0)
    assert client.post("/v1/orders", json=nova_order_body(), headers=NOVA).status_code == 201
    clock.set(T0 + timedelta(days=1))
    ok = client.post(
        "/v1/orders/NOVA-1/events",
        json=event_body("N1", "order.confirmed", at(hours=1), coi=NOVA_COI),
        headers=NOVA,
    )
    assert ok.status_code == 201
    bad = client.post(
        "/v1/orders/NOVA-1/events",
        json=event_body("N2", "order.confirmed", at(hours=2), coi="NC-000124"),
        headers=NOVA,
    )
    problem(bad, 422, "coi-mismatch")


@pytest.mark.parametrize("din", ["A9999211234569", "A99992112345", "A999921123456XX"])
def test_invalid_din_is_refused_at_data_din(acme, engine, din):
    before = snapshot(engine)
    r = post(
        acme, event_body("E1", "collection.completed", at(days=1), {"collected_at": at(days=1), "din": din})
    )
    body = problem(r, 422, "invalid-din")
    assert body["errors"][0]["pointer"] == "/data/din"
    assert snapshot(engine) == before


@pytest.mark.parametrize(
    "type_, data, pointer",
    [
        ("apheresis.scheduled", {}, "/data/start"),
        ("apheresis.scheduled", {"start": "2026-11-05T09:00:00"}, "/data/start"),  # no time zone
        (
            "collection.completed",
            {"collected_at": at(days=1), "measurements": [{"code": "bogus", "value": 1}]},
            "/data/measurements/0/code",
        ),
        ("release.failed", {"reason": "x", "disposition": "shrug"}, "/data/disposition"),
        ("order.confirmed", {"slot": "x"}, "/data/slot"),
        ("order.on_hold", {}, "/data/reason"),
    ],
)
def test_event_data_errors_point_into_data(acme, engine, type_, data, pointer):
    before = snapshot(engine)
    body = problem(post(acme, event_body("E1", type_, at(hours=1), data)), 422, "validation-failed")
    assert pointer in {e["pointer"] for e in body["errors"]}
    assert snapshot(engine) == before


@pytest.mark.parametrize(
    "event, pointer",
    [
        (
            {
                "event_id": "E1",
                "type": "order.placed",
                "occurred_at": "2026-11-01T10:00:00Z",
                "coi": ACME_COI,
            },
            "/type",
        ),
        (
            {
                "event_id": "E1",
                "type": "order.teleported",
                "occurred_at": "2026-11-01T10:00:00Z",
                "coi": ACME_COI,
            },
            "/type",
        ),
        (
            {
                "event_id": "E1",
                "type": "order.confirmed",
                "occurred_at": "2026-11-01T10:00:00",
                "coi": ACME_COI,
            },
            "/occurred_at",
        ),
        ({"event_id": "E1", "type": "order.confirmed", "occurred_at": "2026-11-01T10:00:00Z"}, "/coi"),
        (
            {
                "event_id": "E1",
                "type": "order.confirmed",
                "occurred_at": "2026-11-01T10:00:00Z",
                "coi": ACME_COI,
                "extra": 1,
            },
            "/extra",
        ),
    ],
)
def test_event_envelope_errors(acme, event, pointer):
    body = problem(post(acme, event), 422, "validation-failed")
    assert pointer in {e["pointer"] for e in body["errors"]}


def test_expiry_beyond_the_products_shelf_life_is_refused(acme):
    r = post(
        acme,
        event_body("E1", "manufacturing.completed", at(days=20), {"lot": "L", "expires_at": at(days=400)}),
    )
    body = problem(r, 422, "validation-failed")
    assert body["errors"][0]["pointer"] == "/data/expires_at"


# --------------------------------------------------------------------------- lifecycle through the API


def test_late_event_is_recorded_but_does_not_move_the_state(acme):
    walk(acme, HAPPY_PATH[:6])  # ... manufacturing.started at day 7
    late = post(acme, event_body("LATE", "apheresis.scheduled", at(days=1), {"start": at(days=5)}))
    assert late.status_code == 201 and late.json()["late"] is True
    order = acme.get("/v1/orders/ORD-1", headers=ACME).json()
    assert order["status"] == "manufacturing"
    assert order["timeline"][-1]["event_id"] == "LATE" and order["timeline"][-1]["late"] is True


def test_stale_event_after_the_stage_time_is_out_of_order(acme, engine):
    walk(acme, HAPPY_PATH[:6])
    before = snapshot(engine)
    r = post(acme, event_body("X", "apheresis.scheduled", at(days=8), {"start": at(days=9)}))
    problem(r, 409, "out-of-order")
    assert snapshot(engine) == before


def test_terminal_state_refuses_stage_events(acme):
    assert (
        post(
            acme, event_body("C", "order.cancelled", at(hours=1), {"reason": "patient withdrew"})
        ).status_code
        == 201
    )
    problem(post(acme, event_body("X", "order.confirmed", at(hours=2))), 409, "terminal-state")


def test_hold_resume_and_refusals(acme):
    walk(acme, HAPPY_PATH[:1])
    assert (
        post(acme, event_body("H", "order.on_hold", at(hours=2), {"reason": "insurance"})).json()[
            "status_after"
        ]
        == "on_hold"
    )
    problem(
        post(acme, event_body("H2", "order.on_hold", at(hours=3), {"reason": "again"})), 409, "order-on-hold"
    )
    problem(
        post(acme, event_body("S", "apheresis.scheduled", at(hours=3), {"start": at(days=5)})),
        409,
        "order-on-hold",
    )
    assert post(acme, event_body("R", "order.resumed", at(hours=4))).json()["status_after"] == "confirmed"
    problem(post(acme, event_body("R2", "order.resumed", at(hours=5))), 409, "not-on-hold")


def test_custody_before_collection_is_no_material(acme):
    r = post(
        acme,
        event_body(
            "C", "custody.transferred", at(hours=1), {"from_party": "a", "to_party": "b", "at": at(hours=1)}
        ),
    )
    problem(r, 409, "no-material")


def test_remanufacture_and_not_releasable(acme):
    problem(
        post(
            acme,
            event_body("F0", "release.failed", at(hours=1), {"reason": "x", "disposition": "remanufacture"}),
        ),
        409,
        "invalid-transition",
    )
    walk(acme, HAPPY_PATH[:7])
    r = post(
        acme,
        event_body(
            "F1",
            "release.failed",
            at(days=21),
            {"results": RESULTS, "reason": "low CAR+", "disposition": "remanufacture"},
        ),
    )
    assert r.json()["status_after"] == "manufacturing"
    r = post(
        acme,
        event_body(
            "F2", "release.failed", at(days=29), {"reason": "contaminated", "disposition": "not_releasable"}
        ),
    )
    assert r.json()["status_after"] == "failed"


def test_infusion_after_expiry_is_beyond_shelf_life(acme, engine):
    steps = [s for s in HAPPY_PATH[:10]]
    steps[6] = (
        "manufacturing.completed",
        at(days=20),
        {"lot": "LOT-1", "expires_at": at(days=24)},
        "manufactured",
    )
    walk(acme, steps)
    before = snapshot(engine)
    r = post(acme, event_body("I", "infusion.scheduled", at(days=23, hours=1), {"start": at(days=25)}))
    body = problem(r, 422, "beyond-shelf-life")
    assert body["errors"][0]["pointer"] == "/data/start"
    assert snapshot(engine) == before


def test_event_for_unknown_order_is_404(acme):
    problem(post(acme, event_body("E", "order.confirmed", at(hours=1)), "NOPE"), 404, "not-found")


def test_event_and_its_outputs_commit_together_or_not_at_all(acme, engine, monkeypatch):
    from gateway.intake import pipeline

    before = snapshot(engine)
    monkeypatch.setattr(
        pipeline, "process_event", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom"))
    )
    r = post(acme, event_body("E1", "order.confirmed", at(hours=1)))
    assert r.status_code == 500
    assert snapshot(engine) == before


def test_times_with_offsets_are_kept_as_the_same_instant(acme):
    r = post(acme, event_body("E1", "order.confirmed", "2026-11-01T12:30:00+02:00"))
    assert r.status_code == 201
    assert r.json()["occurred_at"] == "2026-11-01T10:30:00Z"
    order = acme.get("/v1/orders/ORD-1", headers=ACME).json()
    assert order["timeline"][1]["occurred_at"] == "2026-11-01T10:30:00Z"
    assert order["state"]["stage_occurred_at"] in ("2026-11-01T10:30:00Z", "2026-11-01T12:30:00+02:00")
