"""HL7v2 fidelity that receiving engines check (issue 11, item 7): ORC-16 is one kind of value (the coded
business status) in every message; qualitative results carry a code in OBX-5 that the FHIR Observation
agrees with; an optional PV1 per profile, valid in every structure and version; preview flags an
override that renders a required field empty."""

from __future__ import annotations

import re
from typing import Any

import hl7
import pytest

from mappings.domain import EventType
from mappings.preview import preview_steps
from mappings.preview_overrides import empty_required_overrides, required_fields
from mappings.profile.loader import ProfileInvalid, load_profile_text
from mappings.profile.schema import SiteProfile
from mappings.result import Hl7Message
from mappings.translate import translate
from terminology import load_terminology
from tests.unit.hl7v2_cases import (
    CASES,
    FIXTURES,
    NOW,
    journey,
    profile,
    render,
    render_journey,
    same_fields_in_both_parsers,
    validate_hl7apy,
    variant,
)

PV1 = {"patient_class": "O",
       "assigned_location": {"point_of_care": "CTI", "room": "12", "facility": "SITE-B",
                             "person_location_type": "C", "description": "Cell therapy"}}

#: Every message kind, on every version: (site, hl7v2 settings changed).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "2.5.1-oml-all": ("site-a", {"blood_product_status": True}),
    "2.5.1-orm-obx": ("site-a", {"order_message": "ORM^O01", "coi_location": "OBX",
                                 "blood_product_status": True}),
    "2.4-oml-zcg": ("site-a", {"version": "2.4", "charset": "UNICODE", "coi_location": "ZCG"}),
    "2.3-orm-sched": ("site-b", {"scheduling": True}),
    "2.3-orm-obx": ("site-b", {"scheduling": True, "coi_location": "OBX"}),
}


def _variant(name: str, **more: Any) -> SiteProfile:
    site, changes = VARIANTS[name]
    return variant(site, **{**changes, **more})


def _segments(message: Hl7Message, segment_id: str) -> list[list[str]]:
    return [line.split("|") for line in message.er7.split("\r") if line.startswith(segment_id + "|")]


# --------------------------------------------------------------------------- ORC-16


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_orc_16_is_the_coded_business_status_in_every_message(name: str) -> None:
    site = _variant(name)
    seen: set[str] = set()
    for case in CASES:
        for record, message in render_journey(site, case):
            seen.add(message.message_type)
            for orc in _segments(message, "ORC"):
                code, text, system = orc[16].split("^")
                assert code and text and system in ("99CGT", "L"), (message.message_type, orc[16])
                override = site.business_status.overrides.get(record.status_after.value)
                expected = override.code if override else record.status_after.value
                assert code == expected, (record.event_id, message.message_type)
    assert {"ORU^R01"} < seen


def test_orc_16_no_longer_carries_free_text_reasons() -> None:
    """HD and OC used to put ``^reason`` in ORC-16: the reason is in NTE (1R), ORC-16 is coded."""
    for record, message in render_journey(profile("site-a"), "journey-cancelled"):
        held_or_cancelled = record.type in (EventType.order_on_hold, EventType.order_cancelled)
        if held_or_cancelled and message.message_type.startswith("OML"):
            orc = _segments(message, "ORC")[0]
            assert orc[16] == f"{record.status_after.value}^{orc[16].split('^')[1]}^99CGT"
            notes = [nte for nte in _segments(message, "NTE") if nte[4].startswith("1R^")]
            assert hl7.parse(message.er7).unescape(notes[0][3]) == record.data["reason"]


# --------------------------------------------------------------------------- OBX-5 coded


def _obx_rows(message: Hl7Message) -> dict[str, list[str]]:
    return {obx[3].split("^")[0]: obx for obx in _segments(message, "OBX")}


@pytest.mark.parametrize(("site_id", "value_type"), [("site-a", "CWE"), ("site-b", "CE")])
def test_sterility_and_mycoplasma_are_coded_in_obx_5(site_id: str, value_type: str) -> None:
    site = profile(site_id)
    results = [m for _, m in render_journey(site, "journey-autologous") if m.message_type == "ORU^R01"]
    coded: dict[str, list[list[str]]] = {}
    for message in results:
        for obx in _segments(message, "OBX"):
            if obx[2] in ("CWE", "CE", "ST"):
                coded.setdefault(obx[3].split("^")[0], []).append(obx)
    sterility = site.measurement_codes["sterility"].code if site_id == "site-b" else "sterility"
    mycoplasma = site.measurement_codes["mycoplasma"].code if site_id == "site-b" else "mycoplasma"
    assert coded.keys() == {sterility, mycoplasma}
    for obx in coded[sterility]:
        assert obx[2] == value_type and obx[5] == "260385009^Negative^SCT" and obx[8] == ""
    for obx in coded[mycoplasma]:  # "negative" for a mycoplasma test means not detected
        assert obx[2] == value_type and obx[5] == "260415000^Not detected^SCT" and obx[8] == ""
    for message in results:
        validate_hl7apy(message)


def _release(results: list[dict[str, Any]]) -> tuple[Any, Any]:
    snapshot, record = next((s, r) for s, r in journey("site-a", "journey-autologous")
                            if r.type is EventType.release_passed)
    return snapshot, record.model_copy(update={"data": {"results": results}})


@pytest.mark.parametrize(("code", "value", "spec", "obx5", "flag", "interpretation"), [
    ("sterility", "Positive", "negative", "10828004^Positive^SCT", "A", "A"),
    ("sterility", " no  growth ", "negative", "260385009^Negative^SCT", "", "N"),
    ("mycoplasma", "not detected", "negative", "260415000^Not detected^SCT", "", "N"),
    ("mycoplasma", "detected", "not detected", "260373001^Detected^SCT", "A", "A"),
])
def test_coded_results_and_the_fhir_observation_agree(code: str, value: str, spec: str, obx5: str, flag: str,
                                                      interpretation: str) -> None:
    snapshot, record = _release([{"code": code, "value": value, "specification": spec}])
    translation = translate(snapshot, record, profile("site-a"), load_terminology(), NOW)
    (oru,) = [m for m in translation.messages if m.message_type == "ORU^R01"]
    obx = _obx_rows(oru)[code]
    assert (obx[2], obx[5], obx[8]) == ("CWE", obx5, flag)
    (observation,) = [r for r in translation.resources if r["resourceType"] == "Observation"]
    coding = observation["valueCodeableConcept"]["coding"]
    assert [(c["system"], c["code"], c["display"]) for c in coding] == [
        ("http://snomed.info/sct", *obx5.split("^")[:2])]
    assert observation["valueCodeableConcept"]["text"] == value
    assert observation["interpretation"][0]["coding"][0]["code"] == interpretation
    assert "valueString" not in observation


def test_an_unknown_qualitative_answer_is_text_in_both_with_a_warning() -> None:
    snapshot, record = _release([{"code": "sterility", "value": "inconclusive"}])
    translation = translate(snapshot, record, profile("site-a"), load_terminology(), NOW)
    (oru,) = [m for m in translation.messages if m.message_type == "ORU^R01"]
    obx = _obx_rows(oru)["sterility"]
    assert (obx[2], obx[5]) == ("ST", "inconclusive")
    (observation,) = [r for r in translation.resources if r["resourceType"] == "Observation"]
    assert observation["valueString"] == "inconclusive"
    assert [(i.code, i.path) for i in translation.issues if i.code == "unmapped-result"] == [
        ("unmapped-result", "event.data.results[0].value")]


def test_numeric_results_stay_nm() -> None:
    snapshot, record = _release([{"code": "viability_pct", "value": 91, "unit": "%"},
                                 {"code": "sterility", "value": "negative"}])
    (oru,) = [m for m in render(snapshot, record, profile("site-b"))[0] if m.message_type == "ORU^R01"]
    types = [obx[2] for obx in _segments(oru, "OBX")]
    assert types == ["NM", "CE"]


# --------------------------------------------------------------------------- PV1


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_pv1_follows_pid_in_every_message_and_validates_strictly(name: str) -> None:
    site = _variant(name, pv1=PV1)
    kinds = set()
    for case in CASES:
        for _, message in render_journey(site, case):
            kinds.add(message.message_type)
            ids = [line[:3] for line in message.er7.split("\r") if line]
            assert ids[ids.index("PID") + 1] == "PV1", (message.message_type, ids)
            (pv1,) = _segments(message, "PV1")
            assert pv1[1:4] == ["1", "O", "CTI^12^^SITE-B^^C^^^Cell therapy"]
            same_fields_in_both_parsers(message)
    expected = {"ORU^R01", "ORM^O01" if site.hl7v2.order_message == "ORM^O01" else "OML^O21"}
    if site.hl7v2.scheduling:  # (S15 has S12's structure; the fixtures cancel with no appointment pending)
        expected |= {"SIU^S12", "SIU^S13"}
    if site.hl7v2.blood_product_status:
        expected |= {"BPS^O29", "BTS^O31"}
    assert expected <= kinds


def test_without_pv1_no_visit_is_sent_and_site_a_demo_has_one() -> None:
    assert profile("site-b").hl7v2.pv1 is None
    assert not any("\rPV1|" in m.er7 for _, m in render_journey(profile("site-b"), "journey-autologous"))
    site_a = profile("site-a").hl7v2.pv1
    assert site_a is not None and site_a.patient_class == "O"
    messages = [m for _, m in render_journey(profile("site-a"), "journey-autologous")]
    assert all("\rPV1|1|O|CTI^^^SITE-A^^C^^^Cellular Therapy Infusion Clinic\r" in m.er7 for m in messages)


def test_a_pv1_override_applies_to_the_visit() -> None:
    site = variant("site-a", overrides={"PV1-19": "{{ order.order_id }}"})
    (message, *_), _ = render(*journey("site-a", "journey-autologous")[0], site)
    assert _segments(message, "PV1")[0][19] == "ACME-ORD-1001"
    validate_hl7apy(message)


def _site_a_with(pv1_yaml: str) -> str:
    text = (FIXTURES / "profiles" / "site-a.yaml").read_text(encoding="utf-8")
    head, _, _ = text.partition("  # Epic order interfaces")
    return head + pv1_yaml


@pytest.mark.parametrize(("pv1_yaml", "problem"), [
    ("  pv1: {patient_class: X}\n", "hl7v2.pv1.patient_class: Input should be 'B', 'C', 'E'"),
    ("  pv1: {}\n", "hl7v2.pv1.patient_class: Field required"),
    ("  pv1: {patient_class: O, assigned_location: {}}\n",
     "assigned_location needs at least one component"),
    ("  pv1: {patient_class: O, assigned_location: {point_of_care: 'A^B'}}\n",
     "hl7v2.pv1.assigned_location.point_of_care: String should match pattern"),
    ("  pv1: {patient_class: O, assigned_location: {ward: 3}}\n",
     "hl7v2.pv1.assigned_location.ward: unknown field (not allowed here)"),
    ("  pv1: {patient_class: O, assigned_location: {person_location_type: Z}}\n",
     "hl7v2.pv1.assigned_location.person_location_type: Input should be 'C'"),
    ("  pv1: {patient_class: O, assigned_location: {point_of_care: ONKOLOGIE-É}}\n  charset: null\n",
     "pv1.assigned_location.point_of_care has characters outside ASCII"),
])
def test_pv1_schema_errors_name_the_field(pv1_yaml: str, problem: str) -> None:
    text = _site_a_with(pv1_yaml)
    if "charset: null" in pv1_yaml:
        text = text.replace("  charset: UNICODE UTF-8\n", "", 1)
    with pytest.raises(ProfileInvalid) as bad:
        load_profile_text(text, "site-a.yaml")
    problems = "\n".join(bad.value.problems)
    assert problem.lower() in problems.lower(), problems
    assert re.search(r"site-a\.yaml:\d+: ", problems)


# --------------------------------------------------------------------------- empty required fields


def test_required_fields_come_from_the_declared_version() -> None:
    assert required_fields("OBR", "2.5.1") == {4}
    assert {4, 27} <= required_fields("OBR", "2.3")
    assert required_fields("PV1", "2.3") == {2}
    assert required_fields("ZCG", "2.5.1") == frozenset()


@pytest.mark.parametrize(("overrides", "flagged"), [
    ({"OBR-4": ""}, ["profile.hl7v2.overrides.OBR-4"]),
    ({"OBR-4": "{{ '' }}^^"}, ["profile.hl7v2.overrides.OBR-4"]),
    ({"PID-5": "{{ '' }}", "NTE-3": ""}, ["profile.hl7v2.overrides.PID-5"]),  # NTE-3 is optional
    ({"PV1-2": ""}, ["profile.hl7v2.overrides.PV1-2"]),
    ({"OBR-4": "X^Y^L"}, []),
])
def test_preview_flags_an_override_that_renders_a_required_field_empty(overrides: dict[str, str],
                                                                       flagged: list[str]) -> None:
    from gateway.cli.goldens import load_case
    from gateway.config import load_settings
    from gateway.intake.replay import replay_journey

    site = variant("site-a", overrides=overrides)
    fixture = load_case(FIXTURES / "events" / "journey-autologous.json").for_site("site-a")
    steps = replay_journey(load_settings(), fixture.order, fixture.events[:4], placed_at=fixture.placed_at)
    previews = preview_steps(site, steps, load_terminology(), NOW)
    for step in previews:
        found = [i for i in step.issues if i.code == "hl7v2-required-field-empty"]
        assert [i.path for i in found] == flagged
        for issue in found:
            assert issue.severity == "error" and "required in this message" in issue.message
            assert "OML^O21" in issue.message


def test_the_empty_required_check_reads_only_segments_present() -> None:
    (message, *_), _ = render(*journey("site-b", "journey-autologous")[0], profile("site-b"))
    assert empty_required_overrides({"PV1-2": ""}, [message]) == []  # site-b sends no PV1
    assert empty_required_overrides({"OBR-4": ""}, [message]) == []  # OBR-4 holds the product


def test_the_readme_hl7v2_example_is_a_valid_profile_section() -> None:
    import yaml

    from mappings.profile.hl7v2 import Hl7v2Settings

    readme = (FIXTURES.parent / "README.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "charset_fallback" in b]
    settings = Hl7v2Settings.model_validate(yaml.safe_load(block)["hl7v2"])
    assert settings.charset is None and settings.charset_fallback == "transliterate"
    assert settings.pv1 is not None and settings.pv1.assigned_location is not None
    assert settings.pv1.assigned_location.components()[0] == "CTI"


def test_pv1_codes_are_the_hl7_tables() -> None:
    from typing import get_args

    from mappings.profile.pv1 import PatientClass, PersonLocationType
    from terminology.hl7_tables import load_hl7_tables

    tables = load_hl7_tables()
    assert set(get_args(PatientClass)) == set(tables.table("0004"))
    assert set(get_args(PersonLocationType)) == set(tables.table("0305"))
