"""translate(): every resource valid R4 with our code bindings, per-site differences, journey semantics."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from gateway.cli.goldens import CASES, FIXTURES, GOLDEN_NOW, SITES, load_case
from gateway.config import Settings, load_settings
from gateway.intake.replay import replay_journey
from mappings.domain import EventType, OrderStatus
from mappings.fhir import codes
from mappings.ids import ISBT128_COI_SYSTEM, ISBT128_DIN_SYSTEM, NPI_SYSTEM
from mappings.preview import JourneyStep
from mappings.profile.loader import load_profile
from mappings.profile.schema import SiteProfile
from mappings.result import Translation
from mappings.task_status import STATUS_TABLE
from mappings.translate import translate
from terminology import Terminology, load_terminology

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "gateway" / "demo" / "gateway.yaml"


@cache
def settings() -> Settings:
    return load_settings(DEMO_CONFIG)


@cache
def profile(site: str) -> SiteProfile:
    return load_profile(FIXTURES / "profiles" / f"{site}.yaml")


@cache
def steps(case: str, site: str) -> tuple[JourneyStep, ...]:
    loaded = load_case(FIXTURES / "events" / f"{case}.json").for_site(site)
    return tuple(replay_journey(settings(), loaded.order, loaded.events, placed_at=loaded.placed_at))


@cache
def translations(case: str, site: str) -> tuple[tuple[JourneyStep, Translation], ...]:
    out = []
    for step in steps(case, site):
        if step.snapshot is not None and step.record is not None:
            out.append(
                (step, translate(step.snapshot, step.record, profile(site), load_terminology(), GOLDEN_NOW))
            )
    return tuple(out)


def at(case: str, site: str, event_id: str) -> Translation:
    return next(t for s, t in translations(case, site) if s.event_id == event_id)


def of_type(translation: Translation, resource_type: str) -> list[dict[str, Any]]:
    return [r for r in translation.resources if r["resourceType"] == resource_type]


def one(translation: Translation, resource_type: str) -> dict[str, Any]:
    (found,) = of_type(translation, resource_type)
    return found


ALL = [(case, site) for case in CASES for site in SITES]


def all_resources() -> list[dict[str, Any]]:
    return [r for case, site in ALL for _, t in translations(case, site) for r in t.resources]


# --------------------------------------------------------------------------- validity and bindings


def test_every_resource_round_trips_through_r4b() -> None:
    resources_ = all_resources()
    assert {r["resourceType"] for r in resources_} == {
        "Organization",
        "Practitioner",
        "Patient",
        "ServiceRequest",
        "Task",
        "BiologicallyDerivedProduct",
        "Observation",
        "Provenance",
    }
    for resource in resources_:
        model = get_fhir_model_class(resource["resourceType"])
        first = model.model_validate(resource).model_dump(mode="json", exclude_none=True)
        second = model.model_validate(first).model_dump(mode="json", exclude_none=True)
        assert first == resource and second == resource
        assert "versionId" not in resource.get("meta", {}) and "lastUpdated" not in resource.get("meta", {})


def _quantities(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        if "value" in node and ("unit" in node or "code" in node) and isinstance(node.get("value"), float):
            found.append(node)
        for child in node.values():
            found += _quantities(child)
    elif isinstance(node, list):
        for child in node:
            found += _quantities(child)
    return found


def test_code_bindings_fhir_resources_does_not_check() -> None:
    for r in all_resources():
        kind = r["resourceType"]
        if kind == "Task":
            assert r["status"] in codes.TASK_STATUSES
            assert r["intent"] in codes.TASK_INTENTS and r["intent"] == "order"
            assert r["code"]["coding"][0] == {
                "system": codes.TASK_CODE_SYSTEM,
                "code": "fulfill",
                "display": "Fulfill the focal request",
            }
            assert r["priority"] in codes.REQUEST_PRIORITIES
        elif kind == "ServiceRequest":
            assert r["status"] in codes.REQUEST_STATUSES
            assert r["intent"] in codes.REQUEST_INTENTS
            assert r["priority"] in codes.REQUEST_PRIORITIES
        elif kind == "Observation":
            assert r["status"] in codes.OBSERVATION_STATUSES
            for coding in (c for i in r.get("interpretation", []) for c in i["coding"]):
                assert coding["system"] == codes.INTERPRETATION_SYSTEM
                assert coding["code"] in codes.INTERPRETATION_CODES
        elif kind == "BiologicallyDerivedProduct":
            assert r["status"] in codes.BDP_STATUSES
            assert r["productCategory"] in codes.BDP_CATEGORIES
        elif kind == "Provenance":
            for agent in r["agent"]:
                assert agent["type"]["coding"][0]["system"] == codes.PARTICIPANT_TYPE_SYSTEM
                assert agent["type"]["coding"][0]["code"] in {"custodian", "performer"}
            assert all(e["role"] in codes.PROVENANCE_ENTITY_ROLES for e in r["entity"])
        elif kind == "Patient" and "gender" in r:
            assert r["gender"] in codes.ADMINISTRATIVE_GENDERS
        for quantity in _quantities(r):
            if "system" in quantity:
                assert quantity["system"] == codes.UCUM_SYSTEM
                assert quantity["code"] in codes.UCUM_UNITS, quantity


def test_status_table_covers_every_lifecycle_status_with_valid_codes() -> None:
    assert set(STATUS_TABLE) == set(OrderStatus)
    for row in STATUS_TABLE.values():
        assert row.task_status in codes.TASK_STATUSES
        assert row.service_request_status in codes.REQUEST_STATUSES


def test_profile_version_is_recorded_on_every_resource() -> None:
    for case, site in ALL:
        version = profile(site).version
        assert version
        for _, translation in translations(case, site):
            assert translation.profile_version == version
            for resource in translation.resources:
                assert resource["meta"]["tag"] == [
                    {"system": codes.PROFILE_VERSION_TAG_SYSTEM, "code": version}
                ]


def test_the_journeys_map_without_issues() -> None:
    for case, site in ALL:
        for step, translation in translations(case, site):
            assert translation.issues == (), (step.event_id, translation.issues)


# --------------------------------------------------------------------------- determinism


def test_translation_ignores_now_and_is_repeatable() -> None:
    for step, translation in translations("journey-autologous", "site-a"):
        assert step.snapshot is not None and step.record is not None
        again = translate(
            step.snapshot,
            step.record,
            profile("site-a"),
            load_terminology(),
            datetime(2099, 1, 1, tzinfo=UTC),
        )
        assert again.resources == translation.resources


def test_ids_come_from_business_identifiers_and_are_stable_across_events() -> None:
    ids: dict[str, set[str]] = {}
    for _, translation in translations("journey-autologous", "site-a"):
        for r in translation.resources:
            if r["resourceType"] in {"Task", "ServiceRequest", "Patient", "Practitioner"}:
                ids.setdefault(r["resourceType"], set()).add(r["id"])
    assert all(len(v) == 1 for v in ids.values()), ids
    # The same order for another site is the same ServiceRequest/Task (ids never depend on the profile)...
    a, b = at("journey-autologous", "site-a", "evt-001"), at("journey-autologous", "site-b", "evt-001")
    assert one(a, "Task")["id"] == one(b, "Task")["id"]
    # ...but the Patient is keyed by the site's MRN system.
    assert one(a, "Patient")["id"] != one(b, "Patient")["id"]


# --------------------------------------------------------------------------- order, task, parties


def test_service_request_and_task_shape_for_site_a() -> None:
    t = at("journey-autologous", "site-a", "evt-001")
    sr, task = one(t, "ServiceRequest"), one(t, "Task")
    assert sr["status"] == "active" and sr["intent"] == "order" and sr["priority"] == "urgent"
    assert sr["code"]["coding"][0] == {
        "system": "https://site-a.example.org/fhir/CodeSystem/orderables",
        "code": "CGT-CART19",
        "display": "Autologous anti-CD19 CAR-T cell therapy",
    }
    assert [(i["system"], i["value"], i["type"]["coding"][0]["code"]) for i in sr["identifier"]] == [
        ("https://site-a.example.org/fhir/sid/placer-order", "ACME-ORD-1001", "PLAC"),
        ("https://cgt-gateway.example.org/fhir/sid/filler-order", "ACME-ORD-1001", "FILL"),
    ]
    ref = f"ServiceRequest/{sr['id']}"
    assert task["focus"]["reference"] == ref and task["basedOn"] == [{"reference": ref}]
    assert task["for"]["reference"] == f"Patient/{one(t, 'Patient')['id']}"
    assert task["requester"]["reference"] == f"Practitioner/{one(t, 'Practitioner')['id']}"
    manufacturer = next(o for o in of_type(t, "Organization") if o["name"] == "Acme Bio Therapeutics")
    assert task["owner"]["reference"] == f"Organization/{manufacturer['id']}"
    assert task["groupIdentifier"] == {"system": ISBT128_COI_SYSTEM, "value": "CHA999926123456K"}
    assert task["status"] == "accepted"
    assert task["businessStatus"]["coding"][0]["code"] == "confirmed"
    assert task["restriction"]["period"] == {"start": "2026-03-10", "end": "2026-04-21"}
    assert task["authoredOn"] == "2026-03-02T14:00:00Z" and task["lastModified"] == "2026-03-03T09:00:00Z"
    assert "executionPeriod" not in task
    practitioner = one(t, "Practitioner")
    assert practitioner["identifier"][0]["system"] == NPI_SYSTEM
    assert practitioner["identifier"][0]["value"] == "1234567893"


def test_manufacturer_format_coi_gets_a_manufacturer_system() -> None:
    task = one(at("journey-cancelled", "site-a", "nc-001"), "Task")
    assert task["groupIdentifier"] == {
        "system": "https://cgt-gateway.example.org/fhir/sid/manufacturer/nova-cell/coi",
        "value": "NC-000123",
    }


def test_site_a_gets_demographics_site_b_only_the_mrn() -> None:
    full = one(at("journey-autologous", "site-a", "evt-001"), "Patient")
    assert full["name"] == [{"use": "official", "family": "Rivera", "given": ["Ana", "Lucia"]}]
    assert full["birthDate"] == "1971-08-14" and full["gender"] == "female"
    mrn_only = one(at("journey-autologous", "site-b", "evt-001"), "Patient")
    assert set(mrn_only) == {"resourceType", "id", "meta", "identifier"}
    assert mrn_only["identifier"][0]["system"] == "urn:oid:2.16.840.1.113883.19.2.1"
    assert mrn_only["identifier"][0]["value"] == "MRN-448812"
    # No demographics leak through anything else sent to site-b.
    text = json.dumps([r for _, t in translations("journey-autologous", "site-b") for r in t.resources])
    assert "Rivera" not in text and "1971-08-14" not in text


def test_site_b_local_codes_come_first() -> None:
    t = at("journey-autologous", "site-b", "evt-004")
    assert one(t, "ServiceRequest")["code"]["coding"][0]["code"] == "900101"
    status = one(t, "Task")["businessStatus"]
    assert status["coding"][0] == {
        "system": "urn:oid:2.16.840.1.113883.19.2.30",
        "code": "CGT04",
        "display": "CELLS COLLECTED",
    }
    assert status["coding"][1]["code"] == "collected" and status["text"] == "CELLS COLLECTED"
    cd3 = next(o for o in of_type(t, "Observation") if "CD3" in o["code"]["text"])
    assert [c["code"] for c in cd3["code"]["coding"]] == ["LAB7002", "95836-3", "cd3_count"]


@pytest.mark.parametrize(
    ("case", "event_id", "task_status", "sr_status", "reason"),
    [
        ("journey-autologous", "ACME-ORD-1001:placed", "requested", "active", None),
        ("journey-autologous", "evt-004", "in-progress", "active", None),
        (
            "journey-autologous",
            "evt-013",
            "on-hold",
            "on-hold",
            "Patient admitted with an infection; shipment deferred",
        ),
        ("journey-autologous", "evt-014", "in-progress", "active", None),
        ("journey-autologous", "evt-020", "completed", "completed", None),
        ("journey-cancelled", "nc-003", "on-hold", "on-hold", "Insurance authorization pending"),
        ("journey-cancelled", "nc-008", "cancelled", "revoked", "Patient withdrew consent"),
    ],
)
def test_status_and_reason(
    case: str, event_id: str, task_status: str, sr_status: str, reason: str | None
) -> None:
    t = at(case, "site-a", event_id)
    task = one(t, "Task")
    assert task["status"] == task_status
    assert one(t, "ServiceRequest")["status"] == sr_status
    assert task.get("statusReason", {}).get("text") == reason


def test_execution_period_runs_from_collection_to_the_terminal_event() -> None:
    assert one(at("journey-autologous", "site-a", "evt-004"), "Task")["executionPeriod"] == {
        "start": "2026-03-12T17:10:00Z"
    }
    assert one(at("journey-autologous", "site-a", "evt-020"), "Task")["executionPeriod"] == {
        "start": "2026-03-12T17:10:00Z",
        "end": "2026-04-22T14:30:00Z",
    }
    assert (
        one(at("journey-cancelled", "site-a", "nc-008"), "Task")["executionPeriod"]["end"]
        == "2026-05-15T10:00:00Z"
    )


def test_reschedule_replaces_the_scheduled_apheresis() -> None:
    def inputs(event_id: str) -> dict[str, Any]:
        task = one(at("journey-autologous", "site-a", event_id), "Task")
        return {
            i["type"]["coding"][0]["code"]: i.get("valueDateTime", i.get("valueString"))
            for i in task["input"]
        }

    assert inputs("evt-002")["apheresis-start"] == "2026-03-10T13:00:00Z"
    assert inputs("evt-003")["apheresis-start"] == "2026-03-12T13:00:00Z"
    assert inputs("evt-003")["apheresis-location"] == "Site A Apheresis Unit"


# --------------------------------------------------------------------------- products, results, custody


def test_collection_makes_the_starting_material_with_coi_and_din() -> None:
    t = at("journey-autologous", "site-a", "evt-004")
    (material,) = of_type(t, "BiologicallyDerivedProduct")
    assert material["identifier"] == [
        {"system": ISBT128_COI_SYSTEM, "value": "CHA999926123456K"},
        {"system": ISBT128_DIN_SYSTEM, "value": "A999926123456T"},
    ]
    assert material["productCategory"] == "cells" and material["status"] == "available"
    assert material["request"] == [{"reference": f"ServiceRequest/{one(t, 'ServiceRequest')['id']}"}]
    assert material["collection"]["collectedDateTime"] == "2026-03-12T17:10:00Z"
    observations = of_type(t, "Observation")
    assert len(observations) == 4
    for obs in observations:
        assert obs["focus"] == [
            {
                "reference": f"BiologicallyDerivedProduct/{material['id']}",
                "display": "Collected starting material",
            }
        ]
        assert obs["basedOn"][0]["reference"].startswith("ServiceRequest/")


def test_out_of_specification_release_is_flagged_and_remanufacture_makes_a_new_lot() -> None:
    failed = at("journey-autologous", "site-a", "evt-009")
    viability = next(
        o for o in of_type(failed, "Observation") if o["code"]["coding"][0]["code"] == "viability_pct"
    )
    assert viability["valueQuantity"] == {
        "value": 72.0,
        "unit": "%",
        "system": codes.UCUM_SYSTEM,
        "code": "%",
    }
    assert viability["interpretation"][0]["coding"][0]["code"] == "L"
    assert viability["referenceRange"][0]["text"] == ">=80"
    sterility = next(
        o for o in of_type(failed, "Observation") if o["code"]["coding"][0]["code"] == "sterility"
    )
    assert (
        sterility["valueCodeableConcept"] == {
            "coding": [{"system": "http://snomed.info/sct", "code": "260385009", "display": "Negative"}],
            "text": "negative",
        }
        and sterility["interpretation"][0]["coding"][0]["code"] == "N"
    )
    lot1 = next(
        p
        for p in of_type(failed, "BiologicallyDerivedProduct")
        if p["identifier"][-1]["value"] == "LOT-A1001"
    )
    assert viability["focus"][0]["reference"] == f"BiologicallyDerivedProduct/{lot1['id']}"
    assert one(failed, "Task")["businessStatus"]["coding"][0]["code"] == "manufacturing"

    passed = at("journey-autologous", "site-a", "evt-012")
    lots = {
        p["identifier"][-1]["value"]: p
        for p in of_type(passed, "BiologicallyDerivedProduct")
        if p["identifier"][-1]["system"].endswith("/lot")
    }
    assert lots["LOT-A1001"]["status"] == "unavailable" and lots["LOT-A1002"]["status"] == "available"
    assert lots["LOT-A1002"]["id"] != lots["LOT-A1001"]["id"]
    output = one(passed, "Task")["output"][0]["valueReference"]["reference"]
    assert output == f"BiologicallyDerivedProduct/{lots['LOT-A1002']['id']}"


def test_custody_chain_targets_the_product_in_hand() -> None:
    material = of_type(at("journey-autologous", "site-a", "evt-004"), "BiologicallyDerivedProduct")[0]
    first = at("journey-autologous", "site-a", "evt-005")
    provenance = one(first, "Provenance")
    assert provenance["target"] == [{"reference": f"BiologicallyDerivedProduct/{material['id']}"}]
    assert provenance["occurredDateTime"] == "2026-03-12T18:00:00Z"
    assert provenance["recorded"] == "2026-03-12T18:00:00Z"
    assert [(a["type"]["coding"][0]["code"], a["who"]["display"]) for a in provenance["agent"]] == [
        ("custodian", "Acme Courier Services"),
        ("performer", "Site A Apheresis Unit"),
    ]
    assert provenance["location"] == {"display": "Site A Cell Therapy Laboratory"}
    temperature = one(first, "Observation")
    assert temperature["valueQuantity"]["code"] == "Cel" and temperature["valueQuantity"]["value"] == 4.1
    assert temperature["code"]["coding"][0]["code"] == "shipper_temperature"
    assert temperature["focus"] == provenance["target"]

    shipped = one(at("journey-autologous", "site-a", "evt-016"), "Provenance")
    lot2 = next(
        p
        for p in of_type(at("journey-autologous", "site-a", "evt-016"), "BiologicallyDerivedProduct")
        if p["identifier"][-1]["value"] == "LOT-A1002"
    )
    assert shipped["target"] == [{"reference": f"BiologicallyDerivedProduct/{lot2['id']}"}]
    provenance_ids = {
        one(at("journey-autologous", "site-a", e), "Provenance")["id"]
        for e in ("evt-005", "evt-006", "evt-016")
    }
    assert len(provenance_ids) == 3


def test_late_event_adds_its_results_without_touching_the_task() -> None:
    step = next(s for s, _ in translations("journey-autologous", "site-a") if s.event_id == "evt-017")
    assert step.record is not None and step.record.late
    before, late = (
        at("journey-autologous", "site-a", "evt-016"),
        at("journey-autologous", "site-a", "evt-017"),
    )
    assert one(late, "Task") == one(before, "Task")
    assert one(late, "ServiceRequest") == one(before, "ServiceRequest")
    (result,) = of_type(late, "Observation")
    assert result["code"]["coding"][0]["code"] == "mycoplasma"


# --------------------------------------------------------------------------- problems become issues


def fhir_only(site: str) -> SiteProfile:
    """The site's profile with HL7v2 off, so that only the FHIR mapping's issues are seen."""
    base = profile(site)
    return base.model_copy(update={"hl7v2": base.hl7v2.model_copy(update={"enabled": False})})


def _measurements_without(code: str) -> Terminology:
    data = resources.files("terminology").joinpath("data")
    codesystem = json.loads(data.joinpath("cgt-business-status.codesystem.json").read_text(encoding="utf-8"))
    measurements = json.loads(data.joinpath("measurements.json").read_text(encoding="utf-8"))
    del measurements["measurements"][code]
    answers = json.loads(data.joinpath("qualitative_results.json").read_text(encoding="utf-8"))
    answers["measurements"].pop(code, None)
    return Terminology(codesystem, measurements, answers)


def test_unknown_measurement_code_falls_back_to_our_code_with_a_warning() -> None:
    step = next(s for s, _ in translations("journey-autologous", "site-a") if s.event_id == "evt-012")
    assert step.snapshot is not None and step.record is not None
    translation = translate(
        step.snapshot, step.record, fhir_only("site-a"), _measurements_without("vcn"), GOLDEN_NOW
    )
    vcn = next(o for o in of_type(translation, "Observation") if o["code"]["coding"][0]["code"] == "vcn")
    assert (
        vcn["code"]["coding"][0]["system"]
        == "https://cgt-gateway.example.org/fhir/CodeSystem/cgt-measurement"
    )
    assert [(i.severity, i.code, i.path) for i in translation.issues] == [
        ("warning", "unmapped-code", "event.data.results[2].code")
    ]


def test_unmapped_product_and_odd_units_are_issues_not_crashes() -> None:
    step = next(s for s, _ in translations("journey-autologous", "site-a") if s.event_id == "evt-004")
    assert step.snapshot is not None and step.record is not None
    data = dict(step.record.data)
    data["measurements"] = [
        {"code": "tnc_count", "value": 9200, "unit": "cells"},
        {"code": "viability_pct", "value": 97.5, "unit": "%", "specification": "about 90"},
        {"code": "viability_pct", "value": "n/a", "specification": ">=80"},
    ]
    record = step.record.model_copy(update={"data": data})
    bare = fhir_only("site-a").model_copy(update={"products": {}})
    translation = translate(step.snapshot, record, bare, load_terminology(), GOLDEN_NOW)
    found = {(i.severity, i.code, i.path) for i in translation.issues}
    assert found == {
        ("error", "unmapped-product", "profile.products.CART-CD19"),
        ("warning", "unit-mismatch", "event.data.measurements[0].unit"),
        ("warning", "non-ucum-unit", "event.data.measurements[0].unit"),
        ("warning", "unparsed-specification", "event.data.measurements[1].specification"),
        ("warning", "incomparable-specification", "event.data.measurements[2].specification"),
    }
    sr = one(translation, "ServiceRequest")
    assert [c["code"] for c in sr["code"]["coding"]] == ["CART-CD19"]
    tnc = of_type(translation, "Observation")[0]
    assert tnc["valueQuantity"] == {"value": 9200.0, "unit": "cells"}


def test_invalid_event_data_still_updates_the_order() -> None:
    step = next(s for s, _ in translations("journey-autologous", "site-a") if s.event_id == "evt-005")
    assert step.snapshot is not None and step.record is not None
    record = step.record.model_copy(update={"data": {"from_party": "x"}})
    translation = translate(step.snapshot, record, profile("site-a"), load_terminology(), GOLDEN_NOW)
    assert [(i.severity, i.code) for i in translation.issues] == [("error", "invalid-event-data")]
    assert translation.messages == ()
    assert of_type(translation, "Provenance") == [] and one(translation, "Task")["status"] == "in-progress"


def test_event_type_enum_is_fully_exercised_by_the_journeys() -> None:
    seen = {s.event_type for case in CASES for s in steps(case, "site-a") if s.record is not None}
    assert seen == set(EventType)


def test_hl7v2_messages_come_from_the_renderer_per_profile() -> None:
    with_hl7 = at("journey-autologous", "site-b", "ACME-ORD-1001:placed")
    assert [m.message_type for m in with_hl7.messages] == ["ORM^O01"]
    assert with_hl7.messages[0].er7.startswith("MSH|")
    step = next(
        s for s, _ in translations("journey-autologous", "site-b") if s.event_id == "ACME-ORD-1001:placed"
    )
    assert step.snapshot is not None and step.record is not None
    without = translate(step.snapshot, step.record, fhir_only("site-b"), load_terminology(), GOLDEN_NOW)
    assert without.messages == () and without.resources == with_hl7.resources


def test_not_releasable_release_fails_the_task_with_its_reason() -> None:
    case = load_case(FIXTURES / "events" / "journey-autologous.json")
    events = [e for e in case.events if e.event_id <= "evt-008"]
    failed = events[-1].model_copy(
        update={
            "event_id": "evt-x",
            "type": EventType.release_failed,
            "occurred_at": datetime(2026, 3, 30, 12, tzinfo=UTC),
            "data": {
                "reason": "Sterility failure",
                "disposition": "not_releasable",
                "results": [{"code": "sterility", "value": "positive", "specification": "negative"}],
            },
        }
    )
    last = replay_journey(settings(), case.order, [*events, failed], placed_at=case.placed_at)[-1]
    assert last.snapshot is not None and last.record is not None
    t = translate(last.snapshot, last.record, profile("site-a"), load_terminology(), GOLDEN_NOW)
    task = one(t, "Task")
    assert (task["status"], task["statusReason"]["text"]) == ("failed", "Sterility failure")
    assert task["executionPeriod"]["end"] == "2026-03-30T12:00:00Z"
    assert one(t, "ServiceRequest")["status"] == "revoked"
    (sterility,) = of_type(t, "Observation")
    assert sterility["interpretation"][0]["coding"][0]["code"] == "A"


def test_custody_without_known_material_targets_the_order_with_a_warning() -> None:
    step = next(s for s, _ in translations("journey-autologous", "site-a") if s.event_id == "evt-003")
    custody = next(s for s, _ in translations("journey-autologous", "site-a") if s.event_id == "evt-005")
    assert step.snapshot is not None and step.record is not None and custody.record is not None
    record = custody.record.model_copy(update={"sequence": step.record.sequence + 1})
    snapshot = step.snapshot.model_copy(update={"events": (*step.snapshot.events, record)})
    t = translate(snapshot, record, fhir_only("site-a"), load_terminology(), GOLDEN_NOW)
    assert one(t, "Provenance")["target"] == [
        {"reference": f"ServiceRequest/{one(t, 'ServiceRequest')['id']}"}
    ]
    assert [(i.code, i.path) for i in t.issues] == [("no-product", "event.data")]
    assert "focus" not in one(t, "Observation")
