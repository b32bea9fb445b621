"""Issue 11 item 4: ``POST /v1/orders/{order_id}/events/{event_id}/retract`` (SQLite and PostgreSQL).

The issue's case first: an event whose ``occurred_at`` lies in 2062 became the stage time, so the
genuine update after it was only "late"; retracting it lets the genuine events apply again.  Then the
refusals (``retraction-conflict``, roles, bodies), idempotent repeats, terminal states, and what the
site receives: Observations entered-in-error at ``/fhir``, and HL7v2 OBX-11 ``W`` plus a status
message with the recomputed ORC-5, in the outbox and delivered to a python-hl7 MLLP peer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import Session, select

from gateway.bootstrap import create_app
from gateway.config import Settings
from gateway.delivery.outbox import OutboxMessage
from gateway.delivery.senders import DestinationSenders
from gateway.delivery.worker import DeliveryWorker
from gateway.store.fhir_tables import FhirResourceVersion
from gateway.store.tables import EventRow, OrderRow
from mappings.result import Hl7Message
from tests.conftest import ACME, ACME_COI, ADMIN, NOVA, SITE_A, TestClient, event_body, order_body
from tests.integration.test_delivery_support import FAST, Peer, all_finished, site_profile, wait_until
from tests.unit.hl7v2_cases import validate_hl7apy

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
BDP = "BiologicallyDerivedProduct"

# The wrong timestamp was in 2062.  The plausibility part of issue 11 refuses such a time at
# intake unless ``max_future_skew_s`` allows it; the fixture below allows it where that setting exists.
FAR_FUTURE_YEAR = 2062


def at(**delta: float) -> str:
    return (T0 + timedelta(**delta)).isoformat().replace("+00:00", "Z")


def far_future(**delta: float) -> str:
    """A time in FAR_FUTURE_YEAR (same month, day and hour as the issue's ``2062-11-26T09:00:00Z``)."""
    moment = datetime(FAR_FUTURE_YEAR, 11, 26, 9, 0, tzinfo=UTC) + timedelta(**delta)
    return moment.isoformat().replace("+00:00", "Z")


MEAS = [
    {"code": "tnc_count", "value": 5.2, "unit": "10*9"},
    {"code": "viability_pct", "value": 96, "unit": "%", "specification": ">=70"},
]


@pytest.fixture
def acme(client, clock):
    clock.set(T0)
    assert client.post("/v1/orders", json=order_body(), headers=ACME).status_code == 201
    return client


@pytest.fixture
def lenient_client(settings: Settings, engine, clock):
    """The app with far-future event times allowed (the issue's 2062 case must reach the store)."""
    if "max_future_skew_s" in Settings.model_fields:  # issue 11 / plausible times
        settings = settings.model_copy(update={"max_future_skew_s": 10**10})
    clock.set(T0)
    with TestClient(create_app(settings, engine=engine, now=clock), raise_server_exceptions=False) as c:
        assert c.post("/v1/orders", json=order_body(), headers=ACME).status_code == 201
        yield c


def post(client, event, order_id="ORD-1", headers=ACME):
    return client.post(f"/v1/orders/{order_id}/events", json=event, headers=headers)


def retract(client, event_id, reason="entered on the wrong order", order_id="ORD-1", headers=ACME, **kw):
    body = kw.pop("body", {"reason": reason})
    return client.post(f"/v1/orders/{order_id}/events/{event_id}/retract", json=body, headers=headers, **kw)


def post_far_future_event(client, event_id: str, type_: str, data: dict[str, Any]):
    """Post the issue's mistake: an event that happened now, stamped FAR_FUTURE_YEAR."""
    response = post(client, event_body(event_id, type_, far_future(), data))
    assert response.status_code == 201, response.text
    return response


def problem(response, status, code):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code, body
    return body


def order(client, headers=ACME):
    return client.get("/v1/orders/ORD-1", headers=headers).json()


def fhir_versions(engine) -> list[tuple[str, str, int]]:
    with Session(engine) as session:
        rows = session.exec(select(FhirResourceVersion)).all()
        return sorted((r.resource_type, r.resource_id, r.version_id) for r in rows)


def outbox(engine) -> list[OutboxMessage]:
    with Session(engine) as session:
        return list(session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all())  # type: ignore[arg-type]


def task(client, headers=SITE_A) -> dict[str, Any]:
    ref = next(r for r in order(client)["fhir_resources"] if r["resourceType"] == "Task")
    return client.get(f"/fhir/{ref['reference']}", headers=headers).json()


def task_input(resource: dict[str, Any], code: str) -> Any:
    for item in resource.get("input", []):
        if item["type"]["coding"][0]["code"] == code:
            return item.get("valueDateTime") or item.get("valueString")
    return None


# --------------------------------------------------------------------------- the case


def test_retracting_the_2062_event_lets_the_genuine_events_apply_again(lenient_client, engine, clock):
    client = lenient_client
    clock.set(T0 + timedelta(hours=4))
    assert post(client, event_body("EVT-1", "order.confirmed", at(hours=1))).status_code == 201
    post_far_future_event(client, "EVT-2", "apheresis.scheduled", {"start": at(days=5), "location": "Unit 2"})
    assert order(client)["state"]["stage_occurred_at"].startswith(f"{FAR_FUTURE_YEAR}-")
    # The genuine reschedule is only "late" behind the 2062 stage time: the site never sees the new start.
    genuine = post(client, event_body("EVT-3", "apheresis.rescheduled", at(hours=3), {"start": at(days=6)}))
    assert genuine.status_code == 201 and genuine.json()["late"] is True
    assert task_input(task(client), "apheresis-start") == at(days=5)

    clock.set(T0 + timedelta(hours=5))
    answer = retract(client, "EVT-2", "occurred_at typed as 2062 instead of 2026")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "apheresis_scheduled"
    assert body["state"]["stage_occurred_at"] == at(hours=3)  # the genuine reschedule's time
    assert body["event"]["event_id"] == "EVT-2" and body["event"]["retracted_at"] == at(hours=5)
    assert body["event"]["retraction_reason"] == "occurred_at typed as 2062 instead of 2026"

    now = order(client)
    assert now["status"] == "apheresis_scheduled"
    assert now["state"]["stage_occurred_at"] == at(hours=3)
    timeline = {e["event_id"]: e for e in now["timeline"]}
    assert timeline["EVT-2"]["retracted_at"] == at(hours=5)  # shown, never deleted
    assert timeline["EVT-2"]["retraction_reason"] == "occurred_at typed as 2062 instead of 2026"
    assert timeline["EVT-3"]["late"] is False and timeline["EVT-3"]["retracted_at"] is None
    assert timeline["EVT-1"]["retracted_at"] is None and timeline["EVT-1"]["retraction_reason"] is None
    site_task = task(client)
    assert task_input(site_task, "apheresis-start") == at(days=6)  # the genuine schedule applies
    assert not site_task["lastModified"].startswith(str(FAR_FUTURE_YEAR))
    assert task_input(site_task, "apheresis-location") is None  # only the retracted event had it

    # Later genuine events apply as if the 2062 event had never been accepted.
    clock.set(T0 + timedelta(hours=6))
    later = post(client, event_body("EVT-4", "apheresis.rescheduled", at(hours=5, minutes=30),
                                    {"start": at(days=7)}))
    assert later.status_code == 201 and later.json()["late"] is False
    assert task_input(task(client), "apheresis-start") == at(days=7)
    # Re-posting the retracted event is the identical replay of a retracted event: not applied again.
    again = post(client, event_body("EVT-2", "apheresis.scheduled", far_future(),
                                    {"start": at(days=5), "location": "Unit 2"}))
    assert again.status_code == 200 and again.json()["retracted_at"] == at(hours=5)
    assert order(client)["state"]["stage_occurred_at"] == at(hours=5, minutes=30)


# --------------------------------------------------------------------------- refusals


def _collected_with_custody(client, clock):
    clock.set(T0 + timedelta(days=3))
    for event in (
        event_body("E1", "order.confirmed", at(hours=1)),
        event_body("E2", "collection.completed", at(days=2),
                   {"collected_at": at(days=2, hours=-1), "din": "A999921123456", "measurements": MEAS}),
        event_body("E3", "custody.transferred", at(days=2, hours=1),
                   {"from_party": "site-a", "to_party": "courier", "at": at(days=2, hours=1)}),
    ):
        assert post(client, event).status_code == 201


def test_retracting_what_later_events_depend_on_is_a_conflict_naming_them(acme, engine, clock):
    _collected_with_custody(acme, clock)
    before = (order(acme), fhir_versions(engine), outbox(engine))
    body = problem(retract(acme, "E2"), 409, "retraction-conflict")
    assert body["errors"] == [{"pointer": "/timeline/3", "reason": body["errors"][0]["reason"]}]
    assert "E3" in body["errors"][0]["reason"] and "no-material" in body["errors"][0]["reason"]
    assert "newest first" in body["detail"]
    after = (order(acme), fhir_versions(engine), outbox(engine))
    assert after[0] == before[0] and after[1] == before[1] and len(after[2]) == len(before[2])
    # Newest first works.
    assert retract(acme, "E3").status_code == 200
    assert retract(acme, "E2").status_code == 200
    now = order(acme)
    assert now["status"] == "confirmed" and now["state"]["stage"] == "confirmed"
    assert [e["event_id"] for e in now["timeline"] if e["retracted_at"]] == ["E2", "E3"]


def test_retracting_a_hold_that_was_resumed_names_the_resume(acme, clock):
    clock.set(T0 + timedelta(days=1))
    for event in (event_body("E1", "order.confirmed", at(hours=1)),
                  event_body("H", "order.on_hold", at(hours=2), {"reason": "patient unwell"}),
                  event_body("R", "order.resumed", at(hours=3))):
        assert post(acme, event).status_code == 201
    body = problem(retract(acme, "H"), 409, "retraction-conflict")
    assert body["errors"][0]["pointer"] == "/timeline/3" and "not-on-hold" in body["errors"][0]["reason"]
    assert retract(acme, "R").status_code == 200
    assert order(acme)["status"] == "on_hold"
    assert retract(acme, "H").status_code == 200
    assert order(acme)["status"] == "confirmed"


def test_the_order_placing_event_is_not_retractable(acme):
    body = problem(retract(acme, "ORD-1:placed"), 409, "retraction-conflict")
    assert body["errors"][0]["pointer"] == "/timeline/0"
    assert "order.cancelled" in body["detail"]
    assert order(acme)["timeline"][0]["retracted_at"] is None


def test_only_the_orders_manufacturer_may_retract(acme, clock):
    clock.set(T0 + timedelta(hours=2))
    assert post(acme, event_body("E1", "order.confirmed", at(hours=1))).status_code == 201
    problem(retract(acme, "E1", headers=SITE_A), 403, "forbidden")
    problem(retract(acme, "E1", headers=ADMIN), 403, "forbidden")
    problem(retract(acme, "E1", headers={}), 401, "unauthenticated")
    problem(retract(acme, "E1", headers=NOVA), 404, "not-found")  # another manufacturer's order
    problem(retract(acme, "NO-SUCH-EVENT"), 404, "not-found")
    problem(retract(acme, "E1", order_id="ORD-404"), 404, "not-found")
    problem(retract(acme, "E%00", order_id="ORD-1"), 404, "not-found")
    problem(retract(acme, "x" * 65), 404, "not-found")
    # An event of another order of the same manufacturer is not this order's event.
    assert acme.post("/v1/orders", json=order_body("ORD-2"), headers=ACME).status_code == 201
    problem(retract(acme, "E1", order_id="ORD-2"), 404, "not-found")
    assert order(acme)["status"] == "confirmed"


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({}, "/reason"),
        ({"reason": ""}, "/reason"),
        ({"reason": "   \t"}, "/reason"),
        ({"reason": 5}, "/reason"),
        ({"reason": ["x"]}, "/reason"),
        ({"reason": None}, "/reason"),
        ({"reason": "x" * 1001}, "/reason"),
        ({"reason": "a\x00b"}, "/reason"),
        ({"reason": "a\x1bb"}, "/reason"),
        ({"reason": "a\x7f"}, "/reason"),
        ({"reason": "wrong lot\u202e"}, "/reason"),  # a bidi override would reorder what readers see
        ({"reason": "wrong\u200b lot"}, "/reason"),
        ({"reason": "ok", "by": "me"}, "/by"),
    ],
)
def test_bad_bodies_are_refused_by_field(acme, clock, body, pointer):
    clock.set(T0 + timedelta(hours=2))
    assert post(acme, event_body("E1", "order.confirmed", at(hours=1))).status_code == 201
    problem_body = problem(retract(acme, "E1", body=body), 422, "validation-failed")
    assert [e["pointer"] for e in problem_body["errors"]] == [pointer]
    assert order(acme)["timeline"][1]["retracted_at"] is None


def test_malformed_and_non_json_bodies(acme, clock):
    clock.set(T0 + timedelta(hours=2))
    assert post(acme, event_body("E1", "order.confirmed", at(hours=1))).status_code == 201
    url = "/v1/orders/ORD-1/events/E1/retract"
    problem(acme.post(url, content=b'{"reason": ', headers={**ACME, "Content-Type": "application/json"}),
            400, "malformed-json")
    problem(acme.post(url, headers=ACME), 400, "malformed-json")
    problem(acme.post(url, content=b"reason=x", headers={**ACME, "Content-Type": "text/plain"}),
            415, "unsupported-media-type")
    assert retract(acme, "E1", body={"reason": "x" * 1000}).status_code == 200  # the bound itself is fine


# --------------------------------------------------------------------------- repeats and terminal states


def test_a_repeat_is_a_no_op_200(acme, engine, clock):
    _collected_with_custody(acme, clock)
    first = retract(acme, "E3", "wrong courier")
    assert first.status_code == 200
    state = (order(acme), fhir_versions(engine), len(outbox(engine)))
    clock.set(T0 + timedelta(days=4))
    again = retract(acme, "E3", "another reason")
    assert again.status_code == 200
    assert again.json() == first.json()  # the first reason and time are kept
    assert (order(acme), fhir_versions(engine), len(outbox(engine))) == state


def test_retracting_an_erroneous_cancellation_returns_the_order_to_its_stage(acme, clock):
    clock.set(T0 + timedelta(days=1))
    assert post(acme, event_body("E1", "order.confirmed", at(hours=1))).status_code == 201
    cancel = event_body("C", "order.cancelled", at(hours=2), {"reason": "wrong patient?"})
    assert post(acme, cancel).status_code == 201
    assert task(acme)["status"] == "cancelled"
    schedule = event_body("E2", "apheresis.scheduled", at(hours=3), {"start": at(days=5)})
    problem(post(acme, schedule), 409, "terminal-state")
    answer = retract(acme, "C", "cancelled the wrong order")
    assert answer.status_code == 200 and answer.json()["status"] == "confirmed"
    site_task = task(acme)
    assert site_task["status"] == "accepted" and "statusReason" not in site_task
    assert post(acme, schedule).status_code == 201


def test_a_retraction_in_a_terminal_state_is_allowed(acme, clock):
    """An erroneous custody record after infusion-like terminal states: retracting it keeps the state."""
    _collected_with_custody(acme, clock)
    cancel = event_body("X", "order.cancelled", at(days=2, hours=2), {"reason": "stop"})
    assert post(acme, cancel).status_code == 201
    assert retract(acme, "E3").status_code == 200
    assert order(acme)["status"] == "cancelled"


# --------------------------------------------------------------------------- what the site receives


def _hl7(message: OutboxMessage) -> list[list[str]]:
    return [segment.split("|") for segment in message.payload.split("\r") if segment]


def _segments(message: OutboxMessage, name: str) -> list[list[str]]:
    return [s for s in _hl7(message) if s[0] == name]


def test_the_site_receives_the_correction(client, engine, clock, peers):
    peer = Peer(peers).start()
    client.app.state.context.profiles["site-a"] = site_profile(mllp_port=peer.port)
    clock.set(T0)
    assert client.post("/v1/orders", json=order_body(), headers=ACME).status_code == 201
    _collected_with_custody(client, clock)
    collected = order(client)
    observations = [r["reference"] for r in collected["fhir_resources"] if r["resourceType"] == "Observation"]
    assert len(observations) == len(MEAS) + 0  # custody had no temperature
    sent_before = {m.control_id for m in outbox(engine)}
    assert retract(client, "E3").status_code == 200  # custody first (newest first)
    clock.set(T0 + timedelta(days=3, hours=1))
    assert retract(client, "E2", "measurements belong to another collection").status_code == 200

    # FHIR: the site reads the Observations as entered-in-error; version 1 stays as it was.
    for reference in observations:
        current = client.get(f"/fhir/{reference}", headers=SITE_A)
        assert current.status_code == 200 and current.json()["status"] == "entered-in-error"
        assert current.json()["meta"]["versionId"] == "2"
        assert client.get(f"/fhir/{reference}/_history/1", headers=SITE_A).json()["status"] == "final"
    site_task = task(client)
    assert site_task["status"] == "accepted"
    products = [r for r in order(client)["fhir_resources"] if r["resourceType"] == BDP]
    (material,) = [client.get(f"/fhir/{r['reference']}", headers=SITE_A).json() for r in products]
    assert material["status"] == "unavailable"
    assert material["extension"][0]["url"].endswith("/entered-in-error")
    provenances = client.get("/fhir/Provenance", params={"target": f"{BDP}/{material['id']}"},
                             headers=SITE_A).json()
    nullify = [e["resource"] for e in provenances.get("entry", [])
               if e["resource"]["activity"].get("coding", [{}])[0].get("code") == "NULLIFY"]
    assert len(nullify) == 1
    assert nullify[0]["reason"] == [{"text": "measurements belong to another collection"}]
    assert {t["reference"] for t in nullify[0]["target"]} >= set(observations) | {f"Task/{site_task['id']}"}
    # An EHR holding an entered-in-error Observation finds why by searching Provenance by target.
    def provenance_ids(target: str) -> set[str]:
        found = client.get("/fhir/Provenance", params={"target": target}, headers=SITE_A).json()
        return {e["resource"]["id"] for e in found["entry"]}

    for reference in observations:
        assert provenance_ids(reference) == {nullify[0]["id"]}
    assert nullify[0]["id"] in provenance_ids(f"Task/{site_task['id']}")  # with E3's retraction
    assert len(provenance_ids(f"Task/{site_task['id']}")) == 2

    # HL7v2: ORU with OBX-11 W for every result, OBR-25 C; a status message with the recomputed ORC-5.
    new = [m for m in outbox(engine) if m.control_id not in sent_before]
    assert {m.event_id for m in new} == {"E2", "E3"}
    corrections = [m for m in new if m.event_id == "E2"]
    (oru,) = [m for m in corrections if m.message_type == "ORU^R01"]
    results = [s for s in _segments(oru, "OBX") if s[3].split("^")[0] != "coi"]
    assert len(results) == len(MEAS) and all(s[11] == "W" for s in results)
    assert _segments(oru, "OBR")[0][25] == "C"
    assert "measurements belong to another collection" in _segments(oru, "NTE")[0][3]
    (status,) = [m for m in corrections if m.message_type != "ORU^R01"]
    orc = _segments(status, "ORC")[0]
    assert orc[1] == "SC" and orc[5] == "SC"  # confirmed: scheduled (table 0038)
    for message in new:
        validate_hl7apy(Hl7Message(message.message_type, message.control_id, message.payload, "2.5.1"))

    # ... and the MLLP peer (python-hl7) receives them, in order, after the event's own messages.
    senders = DestinationSenders({"site-a": site_profile(mllp_port=peer.port)})
    worker = DeliveryWorker(engine, senders, settings=FAST, close_senders=senders.aclose,
                            alert_after=senders.alert_after)
    stop = worker.run_in_thread()
    try:
        wait_until(lambda: all_finished(engine), "every message delivered")
    finally:
        stop()
    assert peer.received == [m.control_id for m in outbox(engine)]
    assert peer.received[-len(corrections):] == [m.control_id for m in corrections]


def test_retracted_events_are_not_in_later_translations(acme, engine, clock):
    """A retracted collection's DIN/product no longer feeds the Task or a later collection's product."""
    _collected_with_custody(acme, clock)
    assert retract(acme, "E3").status_code == 200
    assert retract(acme, "E2").status_code == 200
    clock.set(T0 + timedelta(days=4))
    genuine = event_body("E4", "collection.completed", at(days=3, hours=12),
                         {"collected_at": at(days=3, hours=11), "din": "A999921123457", "measurements": []})
    assert post(acme, genuine).status_code == 201
    with Session(engine) as session:
        events = session.exec(select(EventRow).order_by(EventRow.sequence)).all()  # type: ignore[arg-type]
        assert [(e.event_id, e.retracted_at is not None) for e in events] == [
            ("ORD-1:placed", False), ("E1", False), ("E2", True), ("E3", True), ("E4", False)]
        assert session.exec(select(OrderRow)).one().history_revision == 2
    products = [r for r in order(acme)["fhir_resources"] if r["resourceType"] == BDP]
    bodies = [acme.get(f"/fhir/{r['reference']}", headers=SITE_A).json() for r in products]
    available = [b for b in bodies if b["status"] == "available"]
    (genuine_product,) = available
    dins = [i["value"] for i in genuine_product["identifier"]
            if i["system"].endswith("DonationIdentificationNumber")]
    assert len(dins) == 1 and dins[0].startswith("A999921123457")
    assert ACME_COI in [i["value"] for i in genuine_product["identifier"]]
    (retracted_product,) = [b for b in bodies if b["status"] == "unavailable"]
    assert retracted_product["extension"][0]["url"].endswith("/entered-in-error")
    # The Task's collection facts come from the genuine collection only.
    assert task(acme)["executionPeriod"]["start"] == at(days=3, hours=11)


def test_a_history_cached_by_another_process_before_the_retraction_is_not_reused(acme, engine, settings,
                                                                                  clock):
    """Process A caches the order's history; process B retracts; A's next event must not see the
    retracted event (the history cache is per engine; ``history_revision`` tells it the history changed)."""
    from gateway.store.db import make_engine

    clock.set(T0 + timedelta(days=1))
    assert post(acme, event_body("E1", "order.confirmed", at(hours=1))).status_code == 201
    scheduled = event_body("E2", "apheresis.scheduled", at(hours=2),
                           {"start": at(days=5), "location": "Unit 2"})
    assert post(acme, scheduled).status_code == 201
    moved = event_body("E3", "apheresis.rescheduled", at(hours=2, minutes=30), {"start": at(days=6)})
    assert post(acme, moved).status_code == 201  # A's cache now holds E1, E2, E3
    other = make_engine(engine.url.render_as_string(hide_password=False))
    try:
        with TestClient(create_app(settings, engine=other, now=clock), raise_server_exceptions=False) as b:
            assert retract(b, "E2", "wrong patient's slot").status_code == 200
    finally:
        other.dispose()
    hold = event_body("E4", "order.on_hold", at(hours=3), {"reason": "awaiting a new slot"})
    assert post(acme, hold).status_code == 201  # translated by A
    site_task = task(acme)
    assert site_task["status"] == "on-hold"
    assert task_input(site_task, "apheresis-location") is None  # only E2 had one
    assert task_input(site_task, "apheresis-start") == at(days=6)



def test_concurrent_retractions_and_events_serialise(settings, engine):
    """8 threads retract the same hold while 8 post updates that a hold refuses: exactly one retraction
    changes the order (the others are no-op repeats), updates are refused before it and applied after
    it, and sequences stay gap-free (real threads, real database)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from gateway.context import build_context
    from gateway.errors import GatewayError
    from gateway.intake.events import accept_event
    from gateway.intake.orders import accept_order
    from gateway.intake.retraction import retract_event
    from mappings.events import EventIn
    from mappings.orders import OrderIn

    context = build_context(settings, engine, now=lambda: T0 + timedelta(days=1))
    accept_order(context, "acme-bio", OrderIn.model_validate(order_body()))
    for event in (event_body("E1", "order.confirmed", at(hours=1)),
                  event_body("H", "order.on_hold", at(hours=2), {"reason": "query"})):
        accept_event(context, "acme-bio", "ORD-1", EventIn.model_validate(event))
    barrier = threading.Barrier(16)

    def run(i: int) -> Any:
        barrier.wait()
        if i % 2:
            return retract_event(context, "acme-bio", "ORD-1", "H", f"reason {i}").changed
        update = event_body(f"N{i}", "apheresis.scheduled", at(hours=3, minutes=i), {"start": at(days=5)})
        try:
            return accept_event(context, "acme-bio", "ORD-1", EventIn.model_validate(update)).created
        except GatewayError as exc:
            return exc.code

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(run, range(16)))
    assert sorted(results[1::2]) == [False] * 7 + [True]
    assert set(results[0::2]) <= {True, "order-on-hold"}
    with Session(engine) as session:
        events = session.exec(select(EventRow).order_by(EventRow.sequence)).all()  # type: ignore[arg-type]
        assert [e.sequence for e in events] == list(range(len(events)))
        (hold,) = [e for e in events if e.retracted_at is not None]
        assert hold.event_id == "H" and hold.retraction_reason in {f"reason {i}" for i in range(1, 16, 2)}
        applied = [e for e in events if e.event_id.startswith("N")]
        assert all(e.sequence > hold.sequence for e in applied)
        assert len(applied) == results[0::2].count(True)
        expected = "apheresis_scheduled" if applied else "confirmed"
        assert session.exec(select(OrderRow)).one().status == expected


def test_openapi_documents_the_retraction(client):
    paths = client.get("/openapi.json").json()["paths"]
    operation = paths["/v1/orders/{order_id}/events/{event_id}/retract"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/RetractionIn")
    for code in ("400", "401", "403", "404", "409", "413", "415", "422"):
        assert list(operation["responses"][code]["content"]) == ["application/problem+json"], code
    assert "201" not in operation["responses"] and "200" in operation["responses"]


def test_a_custody_record_follows_the_retraction_of_the_collection_it_pointed_at(acme, clock):
    """Chain of custody: a handoff recorded after an erroneous second collection pointed at that
    collection's material; once it is retracted, the handoff's Provenance points at the genuine one."""
    clock.set(T0 + timedelta(days=3))
    for event in (
        event_body("E1", "order.confirmed", at(hours=1)),
        event_body("C1", "collection.completed", at(days=1),
                   {"collected_at": at(days=1, hours=-1), "din": "A999921123456"}),
        event_body("C2", "collection.completed", at(days=1, hours=2),  # posted in error
                   {"collected_at": at(days=1, hours=1), "din": "A999921123457"}),
        event_body("K", "custody.transferred", at(days=1, hours=3),
                   {"from_party": "site-a", "to_party": "courier", "at": at(days=1, hours=3)}),
        event_body("M", "manufacturing.started", at(days=2), {"lot": "LOT-7"}),
    ):
        assert post(acme, event).status_code == 201

    def custody_target() -> str:
        refs = [r["reference"] for r in order(acme)["fhir_resources"] if r["resourceType"] == "Provenance"]
        bodies = [acme.get(f"/fhir/{ref}", headers=SITE_A).json() for ref in refs]
        (handoff,) = [b for b in bodies if b["activity"].get("text") == "Custody transfer"]
        return str(handoff["target"][0]["reference"])

    def product(din_prefix: str) -> str:
        for ref in (r for r in order(acme)["fhir_resources"] if r["resourceType"] == BDP):
            body = acme.get(f"/fhir/{ref['reference']}", headers=SITE_A).json()
            if any(i["value"].startswith(din_prefix) for i in body["identifier"]):
                return f"{BDP}/{body['id']}"
        raise AssertionError(din_prefix)

    assert custody_target() == product("A999921123457")
    assert retract(acme, "C2", "DIN of another donation").status_code == 200
    assert custody_target() == product("A999921123456")
    assert order(acme)["status"] == "manufacturing"
