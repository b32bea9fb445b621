"""Issue 13, the site-request service (SQLite and PostgreSQL): ``receive`` decides by the demo policy

    cancel: {auto_until: apheresis_scheduled}, hold: {auto_until: collected},
    reschedule: manufacturer, infused: auto

and the manufacturer decides the rest through ``POST /v1/site-requests/{id}/decision``.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from gateway.delivery.outbox import OutboxMessage
from gateway.store.tables import EventRow, SafetyLogRow
from tests.conftest import ACME, ACME_COI, ADMIN, NOVA, SITE_A, SITE_B
from tests.integration.site_request_support import (
    T0,
    advance_to,
    iso,
    order_row,
    place,
    request_rows,
    send,
    transitions,
)


@pytest.fixture
def placed(client, clock):
    place(client, clock)
    return client


def timeline(client, order_id: str = "ORD-1") -> list[dict]:
    response = client.get(f"/v1/orders/{order_id}", headers=ACME)
    assert response.status_code == 200
    return response.json()["timeline"]


def decide(client, request_id: str, decision: str, reason: str | None = None, headers=ACME):
    body = {"decision": decision} if reason is None else {"decision": decision, "reason": reason}
    return client.post(f"/v1/site-requests/{request_id}/decision", json=body, headers=headers)


# --------------------------------------------------------------------------- cancel


def test_a_cancel_inside_the_window_is_applied_at_once_as_a_site_event(placed, engine):
    outcome = send(placed, "cancel", reason="patient withdrew consent", dedupe_key="EPIC|SITEA|M1",
                   control_id="M1", raw="MSH|^~\\&|EPIC|SITEA|...", sender="mllp:127.0.0.1:5000")
    assert outcome.refusal is None and outcome.created and not outcome.declined_at_once
    request = outcome.request
    assert request is not None and request.state == "applied" and request.kind == "cancel"
    assert request.request_id.startswith("sr-") and request.decided_at is not None
    assert order_row(engine).status == "cancelled"
    last = timeline(placed)[-1]
    assert last["type"] == "order.cancelled" and last["source"] == "site"
    assert last["event_id"] == f"site-request-{request.request_id}"
    assert last["data"] == {"reason": "patient withdrew consent"}
    assert timeline(placed)[0]["source"] == "manufacturer"
    (row,) = request_rows(engine)
    assert row.event_pk is not None and row.raw.startswith("MSH|") and row.sender == "mllp:127.0.0.1:5000"
    assert row.control_id == "M1" and row.dedupe_sha256 and len(row.dedupe_sha256) == 64
    assert transitions(engine, row.seq) == [(None, "pending", "site:site-a"),
                                            ("pending", "applied", "gateway")]


def test_a_cancel_after_manufacturing_started_waits_and_a_decline_leaves_the_order(placed, clock, engine):
    advance_to(placed, clock, "manufacturing")
    outcome = send(placed, "cancel", reason="bed not available")
    request = outcome.request
    assert request is not None and request.state == "awaiting-manufacturer" and request.decided_at is None
    assert order_row(engine).status == "manufacturing"

    missing = decide(placed, request.request_id, "decline")
    assert missing.status_code == 422
    assert [e["pointer"] for e in missing.json()["errors"]] == ["/reason"]

    declined = decide(placed, request.request_id, "decline", "the product is already being made")
    assert declined.status_code == 200, declined.text
    body = declined.json()
    assert body["state"] == "declined" and body["decision_reason"] == "the product is already being made"
    assert body["decided_at"] is not None and body["kind"] == "cancel"
    assert body["reason"] == "bed not available"
    assert order_row(engine).status == "manufacturing"
    assert all(e["source"] == "manufacturer" for e in timeline(placed))

    again = decide(placed, request.request_id, "decline", "the product is already being made")
    assert again.status_code == 200 and again.json() == body  # idempotent
    other = decide(placed, request.request_id, "accept")
    assert other.status_code == 409 and other.json()["code"] == "decision-conflict"
    (row,) = request_rows(engine)
    assert [t[1] for t in transitions(engine, row.seq)] == ["pending", "awaiting-manufacturer", "declined"]


def test_the_manufacturer_accepts_a_cancel_and_it_is_applied(placed, clock, engine):
    advance_to(placed, clock, "manufacturing")
    request = send(placed, "cancel", reason="patient too ill").request
    assert request is not None
    accepted = decide(placed, request.request_id, "accept")
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["state"] == "accepted"
    assert order_row(engine).status == "cancelled"
    last = timeline(placed)[-1]
    assert (last["type"], last["source"]) == ("order.cancelled", "site")
    assert last["data"] == {"reason": "patient too ill"}
    assert decide(placed, request.request_id, "accept").json() == accepted.json()
    conflict = decide(placed, request.request_id, "decline", "changed my mind")
    assert conflict.status_code == 409 and conflict.json()["code"] == "decision-conflict"


def test_a_cancel_after_the_infusion_is_declined_at_once(placed, clock, engine):
    advance_to(placed, clock, "infused")
    acks: list[str] = []
    outcome = send(placed, "cancel", ack=lambda o: acks.append(o.request.state) or "ACK-AE")
    assert outcome.declined_at_once and outcome.decision_code == "terminal-state"
    assert outcome.request is not None and outcome.request.state == "declined"
    assert "infused" in (outcome.request.decision_reason or "")
    assert outcome.ack == "ACK-AE" and acks == ["declined"]
    assert order_row(engine).status == "infused"
    late = decide(placed, outcome.request.request_id, "accept")
    assert late.status_code == 409 and late.json()["code"] == "not-awaiting-decision"


def test_an_accept_the_lifecycle_now_refuses_is_409_and_the_request_stays_awaiting(placed, clock, engine):
    advance_to(placed, clock, "manufacturing")
    request = send(placed, "cancel").request
    assert request is not None
    clock.advance(hours=1)
    body = {"event_id": "C-1", "type": "order.cancelled", "occurred_at": iso(clock()), "coi": ACME_COI,
            "data": {"reason": "the manufacturer stopped it"}}
    assert placed.post("/v1/orders/ORD-1/events", json=body, headers=ACME).status_code == 201
    refused = decide(placed, request.request_id, "accept")
    assert refused.status_code == 409 and refused.json()["code"] == "terminal-state"
    assert placed.get(f"/v1/site-requests/{request.request_id}", headers=ACME).json()["state"] == (
        "awaiting-manufacturer")
    assert decide(placed, request.request_id, "decline", "already cancelled").status_code == 200


# --------------------------------------------------------------------------- hold, release


def test_hold_and_release_inside_the_window(placed, engine):
    hold = send(placed, "hold", reason="infection").request
    assert hold is not None and hold.state == "applied"
    assert order_row(engine).status == "on_hold"
    again = send(placed, "hold")
    assert again.declined_at_once and again.decision_code == "order-on-hold"
    release = send(placed, "release_hold").request
    assert release is not None and release.state == "applied"
    assert order_row(engine).status == "placed"
    assert [e["type"] for e in timeline(placed)[1:]] == ["order.on_hold", "order.resumed"]
    assert timeline(placed)[1]["data"] == {"reason": "infection"}
    nothing = send(placed, "release_hold")
    assert nothing.declined_at_once and nothing.decision_code == "not-on-hold"


def test_a_hold_after_collection_goes_to_the_manufacturer(placed, clock, engine):
    advance_to(placed, clock, "manufacturing")
    hold = send(placed, "hold").request
    assert hold is not None and hold.state == "awaiting-manufacturer"
    assert decide(placed, hold.request_id, "accept").json()["state"] == "accepted"
    assert order_row(engine).status == "on_hold"
    held = timeline(placed)[-1]
    assert held["type"] == "order.on_hold" and held["data"]["reason"]  # a default reason when none was sent


# --------------------------------------------------------------------------- reschedule, change, infused


def test_a_reschedule_goes_to_the_manufacturer_and_is_applied_on_accept(placed, clock, engine):
    advance_to(placed, clock, "apheresis_scheduled")
    start, end = T0 + timedelta(days=20), T0 + timedelta(days=20, hours=4)
    request = send(placed, "reschedule", reason="patient unavailable",
                   requested={"appointment": "apheresis", "start": iso(start), "end": iso(end),
                              "appointment_action": "rescheduled",
                              "placer_appointment_id": "ORD-1-APH"}).request
    assert request is not None and request.state == "awaiting-manufacturer"
    assert request.requested["start"] == iso(start)
    assert order_row(engine).status == "apheresis_scheduled"
    assert decide(placed, request.request_id, "accept").status_code == 200
    last = timeline(placed)[-1]
    assert last["type"] == "apheresis.rescheduled" and last["source"] == "site"
    assert last["data"] == {"start": iso(start), "end": iso(end), "reason": "patient unavailable"}


def test_a_change_before_any_appointment_schedules_the_apheresis(placed, engine):
    start = T0 + timedelta(days=10)
    request = send(placed, "change", requested={"start": iso(start)}).request
    assert request is not None and request.state == "awaiting-manufacturer"  # change follows reschedule
    assert decide(placed, request.request_id, "accept").status_code == 200
    last = timeline(placed)[-1]
    assert (last["type"], last["data"]) == ("apheresis.scheduled", {"start": iso(start)})
    assert order_row(engine).status == "apheresis_scheduled"


def test_an_appointment_cancelled_waits_and_its_accept_applies_nothing(placed, engine):
    request = send(placed, "reschedule", requested={"appointment": "apheresis",
                                                    "appointment_action": "cancelled"}).request
    assert request is not None and request.state == "awaiting-manufacturer"
    assert decide(placed, request.request_id, "accept").json()["state"] == "accepted"
    assert len(timeline(placed)) == 1 and order_row(engine).status == "placed"


def test_infused_is_applied_at_once_at_the_time_the_site_gave(placed, clock, engine):
    advance_to(placed, clock, "infusion_scheduled")
    given = clock() - timedelta(minutes=30)
    outcome = send(placed, "infused", channel="fhir", requested={"administered_at": iso(given)})
    assert outcome.request is not None and outcome.request.state == "applied"
    assert order_row(engine).status == "infused"
    last = timeline(placed)[-1]
    assert (last["type"], last["source"]) == ("product.infused", "site")
    assert last["occurred_at"] == iso(given) and last["data"] == {"infused_at": iso(given)}


def test_the_site_order_number_is_stored_with_the_order(placed, engine):
    outcome = send(placed, "order_number", requested={"site_order_number": "EPIC-778"})
    assert outcome.request is not None and outcome.request.state == "applied"
    assert order_row(engine).site_order_number == "EPIC-778"
    assert len(timeline(placed)) == 1  # no lifecycle event


# --------------------------------------------------------------------------- refusals


def test_an_unknown_order_or_another_sites_order_is_refused_without_a_trace(placed, engine):
    unknown = send(placed, "cancel", order_ref="NOPE")
    assert unknown.request is None and unknown.refusal is not None
    assert (unknown.refusal.code, unknown.refusal.hl7_error) == ("unknown-order", "204")
    other_site = send(placed, "cancel", site_id="site-b")
    assert other_site.refusal is not None and other_site.refusal.code == "unknown-order"
    assert "ORD-1" in other_site.refusal.detail and "site-a" not in other_site.refusal.detail
    acked = send(placed, "cancel", order_ref="NOPE", ack=lambda o: f"AE {o.refusal.code}")
    assert acked.ack == "AE unknown-order"
    assert request_rows(engine) == [] and order_row(engine).status == "placed"


def test_a_coi_mismatch_or_absence_is_refused_and_safety_logged(placed, engine):
    mismatch = send(placed, "cancel", coi="CHA999923000001D", coi_required=True, control_id="C9")
    assert mismatch.refusal is not None and mismatch.refusal.code == "coi-mismatch"
    assert mismatch.refusal.pointer == "/coi" and mismatch.refusal.hl7_error == "207"
    missing = send(placed, "cancel", coi_required=True)
    assert missing.refusal is not None and missing.refusal.code == "coi-missing"
    assert send(placed, "hold", coi=ACME_COI, coi_required=True).request is not None  # the right one passes
    with Session(engine) as session:
        log = session.exec(select(SafetyLogRow).order_by(SafetyLogRow.id)).all()
    assert [(e.code, e.order_id, e.expected_coi) for e in log] == [
        ("coi-mismatch", "ORD-1", ACME_COI), ("coi-missing", "ORD-1", ACME_COI)]
    assert log[0].presented_coi == "CHA999923000001D" and log[1].presented_coi == ""
    assert log[0].event_id == "site-request:hl7v2:C9"
    assert [r.kind for r in request_rows(engine)] == ["hold"]


def test_implausible_or_unknown_requested_values_are_refused_naming_the_value(placed, clock):
    far = send(placed, "change", requested={"start": iso(clock() + timedelta(days=5000))})
    assert far.refusal is not None and (far.refusal.code, far.refusal.pointer) == (
        "invalid-request", "/requested/start")
    future = send(placed, "infused", requested={"administered_at": iso(clock() + timedelta(days=1))})
    assert future.refusal is not None and future.refusal.pointer == "/requested/administered_at"
    odd = send(placed, "cancel", requested={"colour": "blue"})
    assert odd.refusal is not None and odd.refusal.pointer == "/requested/colour"
    backwards = send(placed, "change", requested={"start": iso(T0 + timedelta(days=3)),
                                                  "end": iso(T0 + timedelta(days=2))})
    assert backwards.refusal is not None and backwards.refusal.pointer == "/requested/end"
    no_number = send(placed, "order_number")
    assert no_number.refusal is not None and no_number.refusal.pointer == "/requested/site_order_number"


# --------------------------------------------------------------------------- duplicates


def test_a_duplicate_message_is_answered_with_the_first_ack_and_changes_nothing(placed, engine):
    calls: list[str] = []

    def ack(outcome):
        calls.append(outcome.request.request_id)
        return f"MSH|ACK|{len(calls)}"

    first = send(placed, "hold", dedupe_key="EPIC|SITEA|77", control_id="77", ack=ack)
    second = send(placed, "hold", dedupe_key="EPIC|SITEA|77", control_id="77", ack=ack)
    assert first.created and not second.created
    assert second.ack == first.ack == "MSH|ACK|1" and len(calls) == 1
    assert second.request == first.request
    assert len(request_rows(engine)) == 1 and order_row(engine).status == "on_hold"
    other_site = send(placed, "hold", site_id="site-b", dedupe_key="EPIC|SITEA|77")
    assert other_site.refusal is not None  # the key is per site: site-b's message is its own (unknown order)


def test_sixteen_identical_messages_at_once_make_one_request(placed, engine):
    outcomes: list = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(16)

    def one() -> None:
        try:
            barrier.wait()
            outcomes.append(send(placed, "cancel", dedupe_key="EPIC|SITEA|RACE", control_id="RACE",
                                 ack=lambda o: f"ACK {o.request.request_id}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and len(outcomes) == 16
    assert sum(o.created for o in outcomes) == 1
    assert len({o.request.request_id for o in outcomes}) == 1 and len({o.ack for o in outcomes}) == 1
    assert len(request_rows(engine)) == 1
    with Session(engine) as session:
        cancels = session.exec(select(EventRow).where(EventRow.type == "order.cancelled")).all()
    assert len(cancels) == 1


# --------------------------------------------------------------------------- the REST routes


def test_the_routes_keep_tenants_apart(placed, clock):
    advance_to(placed, clock, "manufacturing")
    request_id = send(placed, "cancel").request.request_id
    path = f"/v1/site-requests/{request_id}"
    assert placed.get(path, headers=ACME).status_code == 200
    assert placed.get(path, headers=SITE_A).status_code == 200
    assert placed.get(path, headers=ADMIN).status_code == 200
    for headers in (NOVA, SITE_B):
        response = placed.get(path, headers=headers)
        assert response.status_code == 404 and response.json()["code"] == "not-found"
        assert placed.get("/v1/site-requests", headers=headers).json() == {"items": [], "next_cursor": None}
    hidden = decide(placed, request_id, "accept", headers=NOVA)
    assert hidden.status_code == 404 and hidden.json()["code"] == "not-found"
    for headers in (SITE_A, ADMIN):
        assert decide(placed, request_id, "accept", headers=headers).status_code == 403
    assert placed.get("/v1/site-requests?site_id=site-b", headers=SITE_A).status_code == 403
    assert placed.get(path, headers={}).status_code == 401
    assert placed.get("/v1/site-requests/sr-nope", headers=ACME).status_code == 404
    assert placed.get("/v1/site-requests/..%2Fadmin", headers=ACME).status_code == 404
    assert placed.get(path, headers=ACME).json()["state"] == "awaiting-manufacturer"


def test_the_list_filters_pages_and_validates_its_query(placed, clock):
    place(placed, clock, "ORD-2")
    clock.set(T0 + timedelta(hours=1))
    ids = [send(placed, "hold").request.request_id,
           send(placed, "hold", order_ref="ORD-2").request.request_id,
           send(placed, "hold").request.request_id]
    page = placed.get("/v1/site-requests?limit=2", headers=ACME).json()
    assert [i["request_id"] for i in page["items"]] == ids[:2] and page["next_cursor"]
    rest = placed.get(f"/v1/site-requests?limit=2&cursor={page['next_cursor']}", headers=ACME).json()
    assert [i["request_id"] for i in rest["items"]] == ids[2:] and rest["next_cursor"] is None
    item = page["items"][0]
    assert {"request_id", "order_id", "site_id", "kind", "state", "requested", "reason", "received_at",
            "decided_at"} <= set(item)
    assert "raw" not in item and "ack" not in item
    only_2 = placed.get("/v1/site-requests?order_id=ORD-2", headers=ACME).json()["items"]
    assert [i["request_id"] for i in only_2] == [ids[1]]
    declined = placed.get("/v1/site-requests?state=declined", headers=ACME).json()["items"]
    assert [i["request_id"] for i in declined] == [ids[2]]  # the second hold on ORD-1: already on hold
    mine = placed.get("/v1/site-requests?site_id=site-a", headers=SITE_A).json()["items"]
    assert mine[0]["site_id"] == "site-a"
    for query, pointer in (("state=bogus", "/query/state"), ("cursor=%25%25", "/query/cursor"),
                           ("cursor=WzFd", None), ("limit=0", "/query/limit"), ("limit=201", "/query/limit"),
                           ("order_id=a%2Fb", "/query/order_id")):
        response = placed.get(f"/v1/site-requests?{query}", headers=ACME)
        if pointer is None:
            assert response.status_code == 200  # a cursor of ours ([1])
            continue
        assert response.status_code == 400, query
        assert response.json()["code"] == "invalid-parameter"
        assert [e["pointer"] for e in response.json()["errors"]] == [pointer]
    for bad in ("W10", "WzAuNV0", "WzEsMl0", "Wzk5OTk5OTk5OTk5OTk5OTk5OTk5XQ"):
        assert placed.get(f"/v1/site-requests?cursor={bad}", headers=ACME).status_code == 400, bad


def test_a_decision_body_is_validated(placed, clock):
    advance_to(placed, clock, "manufacturing")
    request_id = send(placed, "cancel").request.request_id
    path = f"/v1/site-requests/{request_id}/decision"
    for body, pointer in (({"decision": "maybe"}, "/decision"), ({}, "/decision"),
                          ({"decision": "decline", "reason": "  "}, "/reason"),
                          ({"decision": "decline", "reason": "x\u202ey"}, "/reason"),
                          ({"decision": "accept", "extra": 1}, "/extra")):
        response = placed.post(path, json=body, headers=ACME)
        assert response.status_code == 422, body
        assert pointer in [e["pointer"] for e in response.json()["errors"]]
    applied = send(placed, "order_number", requested={"site_order_number": "N-1"}).request
    response = decide(placed, applied.request_id, "accept")
    assert response.status_code == 409 and response.json()["code"] == "not-awaiting-decision"


# --------------------------------------------------------------------------- the manufacturer's webhook


@pytest.fixture
def hooked(settings, engine, clock, monkeypatch):
    from gateway.bootstrap import create_app
    from gateway.config import WebhookConfig
    from tests.conftest import TestClient

    manufacturers = [m.model_copy(update={"webhook": WebhookConfig(url="https://acme.example/hook",
                                                                    secret_env="ACME_HOOK_SECRET")})
                     if m.id == "acme-bio" else m for m in settings.manufacturers]
    hooked_settings = settings.model_copy(update={"manufacturers": manufacturers})
    app = create_app(hooked_settings, engine=engine, now=clock)
    with TestClient(app, raise_server_exceptions=False) as c:
        place(c, clock)
        yield c


def test_every_request_is_announced_on_the_manufacturers_webhook_without_patient_data(hooked, clock, engine):
    advance_to(hooked, clock, "manufacturing")
    request = send(hooked, "cancel", reason="no longer eligible").request
    with Session(engine) as session:
        rows = session.exec(select(OutboxMessage).where(OutboxMessage.channel == "webhook")).all()
    assert len(rows) == 1
    row = rows[0]
    assert (row.destination, row.message_type, row.content_type) == (
        "acme-bio/webhook", "site_request.received", "application/json")
    assert (row.site_id, row.manufacturer_id, row.order_id) == ("site-a", "acme-bio", "ORD-1")
    body = json.loads(row.payload)
    assert body["type"] == "site_request.received" and body["delivery_id"] == row.control_id
    assert body["request"] == {
        "request_id": request.request_id, "order_id": "ORD-1", "site_id": "site-a", "kind": "cancel",
        "state": "awaiting-manufacturer", "requested": {}, "reason": "no longer eligible",
        "received_at": iso(clock()), "decided_at": None}
    for phi in ("Zyxwvut", "Quillon", "MRN-0042", "1971-03-09", ACME_COI):
        assert phi not in row.payload
    send(hooked, "hold", site_id="site-b")  # refused: nothing announced
    with Session(engine) as session:
        count = session.execute(sa.select(sa.func.count()).select_from(OutboxMessage)
                                .where(OutboxMessage.channel == "webhook")).scalar_one()
    assert count == 1


def test_no_webhook_row_for_a_manufacturer_without_a_webhook(placed, engine):
    send(placed, "hold")
    with Session(engine) as session:
        assert session.exec(select(OutboxMessage).where(OutboxMessage.channel == "webhook")).all() == []
