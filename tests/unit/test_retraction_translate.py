"""The pure side of retraction: the replay without an event (``gateway.intake.retraction.replay_without``)
and ``translate_retraction`` over every event of the fixture journeys, for both demo sites and the
HL7v2 variants (OBX CoI, OML/ORM): every FHIR resource round-trips through R4B, every HL7v2 message
parses with hl7apy STRICT (and python-hl7 reads the same fields)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from gateway.errors import Conflict
from gateway.intake.retraction import RetractionConflict, replay_without
from mappings.domain import EventType, OrderStatus
from mappings.er7.escape import unescape
from mappings.events import EventRecord
from mappings.fhir import codes
from mappings.fhir.retraction import DATA_OPERATION_SYSTEM, ENTERED_IN_ERROR_EXTENSION
from mappings.retraction import Retraction, translate_retraction
from mappings.snapshot import OrderSnapshot
from mappings.translate import translate
from terminology import load_terminology
from tests.unit.hl7v2_cases import (
    CASES,
    NOW,
    SITES,
    journey,
    profile,
    same_fields_in_both_parsers,
    validate_hl7apy,
    variant,
)

RETRACTED_AT = datetime(2026, 12, 20, 8, 30, tzinfo=UTC)


def final(site: str, case: str) -> OrderSnapshot:
    snapshot, _ = journey(site, case)[-1]
    return snapshot


def without(snapshot: OrderSnapshot, retracted: EventRecord) -> OrderSnapshot | None:
    """The order once ``retracted`` is retracted, or None if the replay refuses a remaining event."""
    try:
        replayed = replay_without(snapshot.events, retracted, autologous=True)
    except RetractionConflict:
        return None
    return snapshot.model_copy(update={"events": replayed.events, "status": replayed.state.status})


def _round_trips(resource: dict[str, Any]) -> None:
    model = get_fhir_model_class(resource["resourceType"])
    first = model.model_validate(resource).model_dump(mode="json", exclude_none=True)
    assert first == resource
    assert model.model_validate(first).model_dump(mode="json", exclude_none=True) == resource


def nullifications(resources: Any) -> list[dict[str, Any]]:
    return [r for r in resources if r["resourceType"] == "Provenance"
            and r["activity"].get("coding", [{}])[0].get("code") == "NULLIFY"]


CASES_BY_SITE = [(site, case) for site in SITES for case in CASES]


@pytest.mark.parametrize(("site", "case"), CASES_BY_SITE)
def test_every_retractable_event_translates_to_valid_fhir_and_hl7v2(site: str, case: str) -> None:
    before = final(site, case)
    profiles = [profile(site), variant(site, coi_location="OBX")]
    if site == "site-a":  # 2.5.1: also the ORM^O01 style (2.3 has no OML^O21)
        profiles.append(variant(site, order_message="ORM^O01"))
    retractable = 0
    for retracted in before.events[1:]:
        after = without(before, retracted)
        if after is None:
            continue
        retractable += 1
        for site_profile in profiles:
            result = translate_retraction(before, after, retracted, Retraction("typed on the wrong order",
                                                                               RETRACTED_AT),
                                          site_profile, load_terminology(), NOW)
            for resource in result.resources:
                _round_trips(resource)
                if resource["resourceType"] == "Observation":
                    assert resource["status"] in codes.OBSERVATION_STATUSES
                if resource["resourceType"] == "BiologicallyDerivedProduct":
                    assert resource["status"] in codes.BDP_STATUSES
            assert result.messages, "a site with HL7v2 on always gets the status message"
            for message in result.messages:
                same_fields_in_both_parsers(message)
            controls = [m.control_id for m in result.messages]
            assert len(set(controls)) == len(controls)
    assert retractable >= 2


def test_the_correction_of_a_retracted_release() -> None:
    before = final("site-a", "journey-autologous")
    released = next(e for e in before.events if e.type is EventType.release_passed)
    later = [e for e in before.events if e.sequence > released.sequence]
    # Retract newest first down to the release (each retraction is checked on its own order).
    order = before
    for record in reversed(later):
        after = without(order, record)
        assert after is not None, record.event_id
        order = after
    after = without(order, released)
    assert after is not None and after.status is OrderStatus.manufactured
    result = translate_retraction(order, after, released, Retraction("results of another lot", RETRACTED_AT),
                                  profile("site-a"), load_terminology(), NOW)
    kinds = {r["resourceType"] for r in result.resources}
    assert {"Task", "ServiceRequest", "Observation", "Provenance"} <= kinds
    observations = [r for r in result.resources if r["resourceType"] == "Observation"
                    and r["status"] == "entered-in-error"]
    data = released.typed_data()
    assert len(observations) == len(data.results)  # type: ignore[attr-defined]
    (task,) = [r for r in result.resources if r["resourceType"] == "Task"]
    assert task["businessStatus"]["coding"][-1]["code"] == "manufactured"
    (nullify,) = nullifications(result.resources)
    assert nullify["activity"]["coding"][0] == {"system": DATA_OPERATION_SYSTEM, "code": "NULLIFY",
                                                "display": "nullify"}
    assert {t["reference"] for t in nullify["target"]} >= {f"Observation/{o['id']}" for o in observations}
    assert nullify["entity"][0]["what"]["identifier"]["value"] == released.event_id
    # The lot's final product is no longer available without its release.
    products = [r for r in result.resources if r["resourceType"] == "BiologicallyDerivedProduct"]
    assert products and all(p["status"] == "unavailable" for p in products)
    assert not any(p.get("extension") for p in products)  # the lot still exists: not entered in error
    messages = {m.message_type: m.er7.split("\r") for m in result.messages}
    assert set(messages) == {"OML^O21", "ORU^R01"}
    orc = next(s for s in messages["OML^O21"] if s.startswith("ORC|")).split("|")
    assert orc[1] == "SC" and orc[5] == "IP"
    obx = [s.split("|") for s in messages["ORU^R01"] if s.startswith("OBX|")]
    assert obx and all(s[11] == "W" for s in obx)


def test_a_product_only_the_retracted_event_made_is_marked() -> None:
    order = final("site-a", "journey-autologous")
    collection = next(e for e in order.events if e.type is EventType.collection_completed)
    for record in reversed([e for e in order.events if e.sequence > collection.sequence]):
        after = without(order, record)
        assert after is not None, record.event_id
        order = after
    after = without(order, collection)
    assert after is not None and after.status is not OrderStatus.collected
    result = translate_retraction(order, after, collection, Retraction("wrong DIN", RETRACTED_AT),
                                  profile("site-a"), load_terminology(), NOW)
    products = [r for r in result.resources if r["resourceType"] == "BiologicallyDerivedProduct"]
    (material,) = products
    assert material["status"] == "unavailable"
    (extension,) = material["extension"]
    assert extension["url"] == ENTERED_IN_ERROR_EXTENSION
    parts = {e["url"]: next(v for k, v in e.items() if k.startswith("value")) for e in extension["extension"]}
    assert parts == {"retractedAt": "2026-12-20T08:30:00Z", "reason": "wrong DIN"}
    (nullify,) = nullifications(result.resources)
    assert f"BiologicallyDerivedProduct/{material['id']}" in {t["reference"] for t in nullify["target"]}


def test_the_translation_after_a_retraction_never_sees_the_retracted_event() -> None:
    before = final("site-a", "journey-autologous")
    custody = next(e for e in before.events if e.type is EventType.custody_transferred)
    after = without(before, custody)
    assert after is not None and all(e.event_id != custody.event_id for e in after.events)
    with pytest.raises(ValueError):
        translate_retraction(before, before, custody, Retraction("x", RETRACTED_AT), profile("site-a"),
                             load_terminology(), NOW)
    plain = translate(after, after.events[-1], profile("site-a"), load_terminology(), NOW)
    assert not any(custody.event_id in str(r) for r in plain.resources)


def test_replay_refuses_what_would_no_longer_be_accepted() -> None:
    before = final("site-a", "journey-autologous")
    collection = next(e for e in before.events if e.type is EventType.collection_completed)
    with pytest.raises(RetractionConflict) as refused:
        replay_without(before.events, collection, autologous=True)
    assert isinstance(refused.value, Conflict) and refused.value.code == "retraction-conflict"
    (error,) = refused.value.errors
    blocked = before.events[int(error.pointer.rsplit("/", 1)[1])]
    assert blocked.sequence > collection.sequence and blocked.event_id in error.reason


def test_replay_without_a_late_event_changes_nothing_else() -> None:
    before = final("site-a", "journey-autologous")
    newest = before.events[-1]
    replayed = replay_without(before.events, newest, autologous=True)
    assert [e.event_id for e in replayed.events] == [e.event_id for e in before.events[:-1]]
    assert [(e.late, e.status_after) for e in replayed.events] == [
        (e.late, e.status_after) for e in before.events[:-1]]


def _siu(site_profile_: Any, before: OrderSnapshot, event_id: str) -> list[list[str]]:
    retracted = next(e for e in before.events if e.event_id == event_id)
    after = without(before, retracted)
    assert after is not None
    result = translate_retraction(before, after, retracted, Retraction("booked in error", RETRACTED_AT),
                                  site_profile_, load_terminology(), NOW)
    for message in result.messages:
        same_fields_in_both_parsers(message)
    return [m.er7.split("\r") for m in result.messages if m.message_type.startswith("SIU")]


def _sch(message: list[str]) -> list[str]:
    return next(s for s in message if s.startswith("SCH|")).split("|")


@pytest.mark.parametrize("site", ["site-a", pytest.param("site-b", id="site-b-2.3")])
def test_appointments_follow_the_retraction(site: str) -> None:
    site_profile_ = variant(site, scheduling=True)
    steps = journey(site, "journey-autologous")
    rescheduled, _ = next((s, r) for s, r in steps if r.event_id == "evt-003")
    scheduled, _ = next((s, r) for s, r in steps if r.event_id == "evt-002")
    # A wrong reschedule: the appointment moves back to the first booking's time (S13).
    (moved,) = _siu(site_profile_, rescheduled, "evt-003")
    first_start = scheduled.events[-1].data["start"]
    assert moved[0].split("|")[8].startswith("SIU^S13") and _sch(moved)[25] == "Booked"
    assert _sch(moved)[11].split("^")[3][:8] == first_start[:10].replace("-", "")
    # A wrong booking: the appointment is cancelled (S15).
    (cancelled,) = _siu(site_profile_, scheduled, "evt-002")
    assert cancelled[0].split("|")[8].startswith("SIU^S15") and _sch(cancelled)[25] == "Cancelled"
    # A wrong infusion record: the infusion appointment is booked again (S12).
    (rebooked,) = _siu(site_profile_, final(site, "journey-autologous"), "evt-020")
    assert rebooked[0].split("|")[8].startswith("SIU^S12")
    # Without scheduling in the profile, no SIU.
    assert _siu(variant(site, scheduling=False), scheduled, "evt-002") == []


def test_a_reason_with_delimiters_and_line_breaks_is_escaped() -> None:
    before = final("site-a", "journey-autologous")
    release = next(e for e in before.events if e.type is EventType.release_passed and not e.late)
    order = before
    for record in reversed([e for e in before.events if e.sequence > release.sequence]):
        after = without(order, record)
        assert after is not None
        order = after
    after = without(order, release)
    assert after is not None
    reason = "lot|LOT-2^A & B ~ \\x\\\r\nsecond line\tend"
    result = translate_retraction(order, after, release, Retraction(reason, RETRACTED_AT), profile("site-a"),
                                  load_terminology(), NOW)
    for message in result.messages:
        validate_hl7apy(message)  # STRICT; hl7apy re-escapes some sequences its own way, so no round trip
        (note,) = [s for s in message.er7.split("\r") if s.startswith("NTE|1|")]
        fields = note.split("|")
        assert len(fields) == 5 and unescape(fields[3]).endswith(reason)
    (nullify,) = nullifications(result.resources)
    assert nullify["reason"] == [{"text": reason}]
