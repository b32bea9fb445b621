"""Issue 14 x 13: a site request (received by MLLP or FHIR) and the manufacturer's decision each append
one audit record in their own transaction, naming who acted; a refusal appends none."""

from __future__ import annotations

import orjson
import sqlalchemy as sa

from gateway.audit import Actor
from gateway.audit.tables import RECORDS
from gateway.audit.verify import verify_chain
from tests.conftest import ACME
from tests.integration.site_request_support import advance_to, place, send


def _records(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.select(RECORDS).order_by(RECORDS.c.seq)).all()


def test_a_site_request_and_its_decision_are_audited_with_their_actors(client, clock, engine) -> None:
    place(client, clock)
    advance_to(client, clock, "manufacturing")
    before = len(_records(engine))
    outcome = send(client, "cancel", reason="bed not available",
                   actor=Actor("mllp:site-a", "site:site-a", "10.0.0.7"))
    assert outcome.request is not None and outcome.request.state == "awaiting-manufacturer"
    received = _records(engine)[before:]
    assert [(r.action, r.operation) for r in received] == [("create", "site_requests.create")]
    (record,) = received
    assert (record.client_id, record.role, record.source) == ("mllp:site-a", "site:site-a", "10.0.0.7")
    entities = orjson.loads(record.entities)
    assert entities == ["order:acme-bio/ORD-1", f"site-request:{outcome.request.request_id}"]
    [patient] = orjson.loads(record.patients)
    assert patient.startswith("Patient/")

    decided = client.post(f"/v1/site-requests/{outcome.request.request_id}/decision",
                          json={"decision": "decline", "reason": "already in manufacturing"}, headers=ACME)
    assert decided.status_code == 200, decided.text
    (decision,) = _records(engine)[before + 1:]
    assert (decision.action, decision.operation) == ("update", "site_requests.decide")
    assert (decision.client_id, decision.role) == ("acme-bio demo", "manufacturer:acme-bio")
    assert orjson.loads(decision.patients) == [patient]
    assert verify_chain(engine).ok


def test_a_refused_site_request_leaves_no_audit_record(client, clock, engine) -> None:
    place(client, clock)
    before = len(_records(engine))
    outcome = send(client, "cancel", order_ref="NO-SUCH-ORDER", actor=Actor("mllp:site-a", "site:site-a"))
    assert outcome.refusal is not None and outcome.refusal.code == "unknown-order"
    assert len(_records(engine)) == before
