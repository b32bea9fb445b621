"""Audit records without a database: the canonical serialization, the hash, the AuditEvent shape."""

from __future__ import annotations

import hashlib

import orjson
import pytest
from fhir.resources.R4B.auditevent import AuditEvent

from gateway.audit.fhir import CHAIN_EXTENSION, audit_event
from gateway.audit.patients import fhir_patients
from gateway.audit.records import (
    GENESIS_SHA256,
    MAX_REFS,
    Actor,
    AuditEntry,
    canonical_bytes,
    content_sha256,
    record_sha256,
)

ACTOR = Actor("acme-bio demo", "manufacturer:acme-bio", "10.0.0.7")


def entry(**overrides: object) -> AuditEntry:
    values: dict = {"entities": ["order:acme-bio/ORD-1"], "patients": ["Patient/p1"]}
    values.update(overrides)
    return AuditEntry.of(ACTOR, 1_764_668_400_000_000, "create", "orders.create", **values)


def test_the_canonical_form_and_the_hash_are_the_documented_ones() -> None:
    raw = canonical_bytes(entry())
    assert raw == orjson.dumps([1, 1_764_668_400_000_000, "acme-bio demo", "manufacturer:acme-bio",
                                "create", "orders.create", ["order:acme-bio/ORD-1"], ["Patient/p1"],
                                "success", "10.0.0.7"])
    content = hashlib.sha256(raw).hexdigest()
    assert content_sha256(entry()) == content
    assert record_sha256(7, entry(), GENESIS_SHA256) == hashlib.sha256(
        f"7:{'0' * 64}:{content}".encode()).hexdigest()


def test_the_hash_covers_the_place_every_field_and_the_previous_hash() -> None:
    base = record_sha256(7, entry(), GENESIS_SHA256)
    assert record_sha256(8, entry(), GENESIS_SHA256) != base  # moved: another place
    assert record_sha256(7, entry(), "1" * 64) != base
    assert record_sha256(7, entry(outcome="retry"), GENESIS_SHA256) != base
    assert record_sha256(7, entry(patients=["Patient/p2"]), GENESIS_SHA256) != base
    assert record_sha256(7, entry(source="10.0.0.8"), GENESIS_SHA256) != base


def test_an_entry_is_bounded_and_deduplicated_and_its_action_checked() -> None:
    many = entry(entities=[f"Task/{i}" for i in range(MAX_REFS + 50)] + ["Task/1"],
                 patients=["Patient/p", "Patient/p"])
    assert len(many.entities) == MAX_REFS and many.patients == ("Patient/p",)
    assert len(entry(entities=["x" * 500]).entities[0]) == 200
    with pytest.raises(ValueError, match="action"):
        AuditEntry.of(ACTOR, 0, "peek", "orders.read")


def test_patients_are_found_in_fhir_resources_never_names() -> None:
    task = {"resourceType": "Task", "id": "t", "for": {"reference": "Patient/p1"}, "status": "requested",
            "intent": "order"}
    product = {"resourceType": "BiologicallyDerivedProduct", "id": "b",
               "collection": {"source": {"reference": "Patient/p2"}}}
    patient = {"resourceType": "Patient", "id": "p3", "name": [{"family": "Zyxwvut"}]}
    found = fhir_patients([("Task", "t", orjson.dumps(task)),
                           ("BiologicallyDerivedProduct", "b", orjson.dumps(product)),
                           ("Patient", "p3", orjson.dumps(patient))])
    assert found == ["Patient/p1", "Patient/p2", "Patient/p3"]


@pytest.mark.parametrize("action, operation, outcome, source", [
    ("create", "orders.create", "success", "10.0.0.7"),
    ("search", "fhir.search", "success", "2001:db8::1"),
    ("update", "events.retract", "success", ""),
    ("execute", "outbox.deliver", "retry", "site-a/mllp"),
    ("execute", "outbox.deliver", "dead", "acme-bio/webhook"),
])
def test_audit_events_validate_as_r4_and_carry_the_chain(action: str, operation: str, outcome: str,
                                                         source: str) -> None:
    record = AuditEntry.of(ACTOR, 1_764_668_400_000_000, action, operation,
                           entities=["Task/abc", "order:acme-bio/ORD-1", "outbox:12"],
                           patients=["Patient/p1"], outcome=outcome, source=source)
    event = audit_event(3, record, "a" * 64, "b" * 64)
    AuditEvent.model_validate(event)
    assert event["outcome"] == {"success": "0", "retry": "4", "dead": "8"}[outcome]
    assert event["entity"][0] == {"what": {"reference": "Patient/p1"},
                                  "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                                           "code": "1", "display": "Person"},
                                  "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role",
                                           "code": "1", "display": "Patient"}}
    whats = [e["what"] for e in event["entity"][1:]]
    assert {"identifier": {"system": "urn:cgt-gateway:order", "value": "acme-bio/ORD-1"}} in whats
    assert {"reference": "Task/abc"} in whats
    [chain] = event["extension"]
    assert chain["url"] == CHAIN_EXTENSION
    assert [x["url"] for x in chain["extension"]] == ["seq", "prev", "sha256"]
    assert event["recorded"] == "2025-12-02T09:40:00.000000Z"
