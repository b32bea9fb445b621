"""Issue 13: what a site request sends back to the site (SQLite and PostgreSQL).

Site-a's profile with MLLP delivery enabled: every decision puts the HL7v2 answer (ORC-1 CR, UC, HR,
OR, XR ... with the reason in ORC-16) in ``site-a/mllp`` in the same transaction, valid at hl7apy
STRICT for 2.5.1; the FHIR request Task is stored and readable by the site, its ``status`` following
the decision; an ``order_number`` request gives the ServiceRequest the site's identifier, and later
messages carry the number in ORC-3.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from sqlmodel import Session, select

from gateway.bootstrap import create_app
from gateway.delivery.outbox import OutboxMessage
from mappings.result import Hl7Message
from tests.conftest import ACME, ACME_COI, SITE_A, SITE_B, TestClient, event_body
from tests.integration.site_request_support import T0, advance_to, iso, place, send
from tests.integration.test_delivery_support import site_profile
from tests.unit.hl7v2_cases import validate_hl7apy


@pytest.fixture
def answering(settings, engine, clock):
    app = create_app(settings, engine=engine, now=clock)
    app.state.context.profiles["site-a"] = site_profile("site-a", mllp_port=9)  # queued, never sent here
    with TestClient(app, raise_server_exceptions=False) as client:
        place(client, clock)
        yield client


def mllp_rows(engine) -> list[OutboxMessage]:
    with Session(engine) as session:
        return list(session.exec(select(OutboxMessage).where(OutboxMessage.destination == "site-a/mllp")
                                 .order_by(OutboxMessage.id)).all())


def field(er7: str, segment: str, number: int) -> str:
    """The first ``segment``'s field ``number`` ("" when the message has no such segment)."""
    for line in er7.split("\r"):
        parts = line.split("|")
        if parts[0] == segment:
            return parts[number] if len(parts) > number else ""
    return ""


def answers(engine, request_id: str) -> list[OutboxMessage]:
    """The answer rows of one request (its outbox rows carry ``site-request-<id>``), checked STRICT."""
    rows = [r for r in mllp_rows(engine) if r.event_id == f"site-request-{request_id}"
            and field(r.payload, "ORC", 1) in ("CR", "UC", "HR", "UH", "OR", "UR", "XR", "UX")]
    for row in rows:
        validate_hl7apy(Hl7Message(row.message_type, row.control_id, row.payload, "2.5.1"))
    return rows


def fhir(client, path: str, headers=SITE_A) -> dict[str, Any]:
    response = client.get(f"/fhir/{path}", headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    get_fhir_model_class(body["resourceType"]).model_validate(body)
    return body


def decide(client, request_id: str, decision: str, reason: str | None = None):
    body = {"decision": decision} if reason is None else {"decision": decision, "reason": reason}
    response = client.post(f"/v1/site-requests/{request_id}/decision", json=body, headers=ACME)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_cancel_applied_at_once_is_answered_cr_and_its_task_completed(answering, engine):
    request = send(answering, "cancel", reason="patient withdrew").request
    (answer,) = answers(engine, request.request_id)
    assert field(answer.payload, "ORC", 1) == "CR"
    assert field(answer.payload, "ORC", 5) == "CA"  # the order's new status: cancelled
    assert (answer.site_id, answer.manufacturer_id, answer.order_id) == ("site-a", "acme-bio", "ORD-1")
    task = fhir(answering, f"Task/{request.task_id}")
    assert task["status"] == "completed" and task["code"]["coding"][0]["code"] == "abort"
    assert task["intent"] == "order"
    assert fhir(answering, f"Task/{request.task_id}", headers=ACME)["id"] == request.task_id
    hidden = answering.get(f"/fhir/Task/{request.task_id}", headers=SITE_B)
    assert hidden.status_code == 404


def test_a_declined_cancel_is_answered_uc_with_the_reason_and_the_task_rejected(answering, clock, engine):
    advance_to(answering, clock, "manufacturing")
    request = send(answering, "cancel").request
    assert answers(engine, request.request_id) == []  # undecided: no order-control answer yet
    assert fhir(answering, f"Task/{request.task_id}")["status"] == "received"
    before = len(mllp_rows(engine))
    decide(answering, request.request_id, "decline", "manufacturing has started")
    (answer,) = answers(engine, request.request_id)
    assert field(answer.payload, "ORC", 1) == "UC"
    assert "manufacturing has started" in field(answer.payload, "ORC", 16)
    assert len(mllp_rows(engine)) == before + 1  # the answer only: the order did not change
    task = fhir(answering, f"Task/{request.task_id}")
    assert task["status"] == "rejected" and task["statusReason"]["text"] == "manufacturing has started"


def test_a_cancel_declined_at_once_is_answered_uc_with_the_lifecycles_reason(answering, clock, engine):
    advance_to(answering, clock, "infused")
    request = send(answering, "cancel").request
    (answer,) = answers(engine, request.request_id)
    assert field(answer.payload, "ORC", 1) == "UC" and "infused" in field(answer.payload, "ORC", 16)
    assert fhir(answering, f"Task/{request.task_id}")["status"] == "rejected"


def test_hold_and_release_are_answered_hr_and_or(answering, engine):
    hold = send(answering, "hold", reason="fever").request
    release = send(answering, "release_hold").request
    assert [field(a.payload, "ORC", 1) for a in answers(engine, hold.request_id)] == ["HR"]
    assert [field(a.payload, "ORC", 1) for a in answers(engine, release.request_id)] == ["OR"]
    assert fhir(answering, f"Task/{hold.task_id}")["code"]["coding"][0]["code"] == "suspend"


def test_a_reschedule_accepted_is_answered_xr(answering, clock, engine):
    advance_to(answering, clock, "apheresis_scheduled")
    start = T0 + timedelta(days=21)
    requested = {"appointment": "apheresis", "start": iso(start)}
    request = send(answering, "reschedule", requested=requested).request
    decide(answering, request.request_id, "accept")
    (answer,) = answers(engine, request.request_id)
    assert field(answer.payload, "ORC", 1) == "XR"
    task = fhir(answering, f"Task/{request.task_id}")
    assert task["status"] == "completed" and task["code"]["coding"][0]["code"] == "change"


def test_the_site_order_number_is_learned_and_used_from_then_on(answering, clock, engine):
    request = send(answering, "order_number", requested={"site_order_number": "EPIC-778"}).request
    assert request.state == "applied"
    orders = fhir(answering, "ServiceRequest?_count=10")
    (service_request,) = [e["resource"] for e in orders["entry"]]
    assert "EPIC-778" in [i["value"] for i in service_request["identifier"]]
    seen = len(mllp_rows(engine))
    now = clock.advance(hours=1)
    body = event_body("E-CONF", "order.confirmed", iso(now), {}, coi=ACME_COI)
    assert answering.post("/v1/orders/ORD-1/events", json=body, headers=ACME).status_code == 201
    later = mllp_rows(engine)[seen:]
    assert later and all(field(r.payload, "ORC", 3).split("^")[0] == "EPIC-778" for r in later)
    for row in later:
        validate_hl7apy(Hl7Message(row.message_type, row.control_id, row.payload, "2.5.1"))
