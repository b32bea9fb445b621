"""Terminology as data: business-status CodeSystem, measurement map, no invented codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fhir.resources.R4B.codesystem import CodeSystem

from mappings.domain import MeasurementCode, OrderStatus
from mappings.result import MappingIssue
from terminology import (
    BUSINESS_STATUS_SYSTEM,
    LOINC_SYSTEM,
    MEASUREMENT_SYSTEM,
    Concept,
    Terminology,
    UnknownCode,
    load_loinc_allowlist,
    load_terminology,
)

DATA = Path(__file__).resolve().parents[2] / "terminology" / "data"
STANDARDS = Path("/work/shared/reference/standards.md")


@pytest.fixture(scope="module")
def terminology() -> Terminology:
    return load_terminology()


# ----------------------------------------------------------------------------- business status


def test_one_business_status_per_lifecycle_state(terminology: Terminology) -> None:
    assert terminology.business_status_codes() == tuple(s.value for s in OrderStatus)
    for status in OrderStatus:
        concept = terminology.business_status(status)
        assert concept == Concept(BUSINESS_STATUS_SYSTEM, status.value, concept.display, None)
        assert concept.display.strip()


def test_business_status_system_is_ours() -> None:
    assert BUSINESS_STATUS_SYSTEM == "https://cgt-gateway.example.org/fhir/CodeSystem/cgt-business-status"
    assert MEASUREMENT_SYSTEM == "https://cgt-gateway.example.org/fhir/CodeSystem/cgt-measurement"


def test_business_status_codesystem_is_a_valid_r4_codesystem(terminology: Terminology) -> None:
    resource = terminology.business_status_codesystem()
    model = CodeSystem.model_validate(resource)
    again = CodeSystem.model_validate(model.model_dump(mode="json", exclude_none=True))
    assert again.url == BUSINESS_STATUS_SYSTEM
    # code bindings fhir.resources does not check
    assert resource["status"] in {"draft", "active", "retired", "unknown"}
    assert resource["content"] in {"not-present", "example", "fragment", "complete", "supplement"}
    assert resource["count"] == len(resource["concept"]) == len(OrderStatus)
    for concept in resource["concept"]:
        assert concept["display"].strip() and concept["definition"].strip()


def test_business_status_codesystem_is_a_copy(terminology: Terminology) -> None:
    terminology.business_status_codesystem()["concept"].clear()
    assert len(terminology.business_status_codesystem()["concept"]) == len(OrderStatus)


def test_unknown_business_status_raises_a_clear_keyerror(terminology: Terminology) -> None:
    with pytest.raises(UnknownCode) as caught:
        terminology.business_status("delivered")
    assert isinstance(caught.value, KeyError)
    assert caught.value.code == "delivered"
    assert str(caught.value).startswith("unknown business-status code 'delivered'; expected one of: placed, ")


def test_business_status_fallback_never_raises(terminology: Terminology) -> None:
    assert terminology.business_status_or_fallback("placed") == (terminology.business_status("placed"), None)
    concept, issue = terminology.business_status_or_fallback("delivered", path="task.businessStatus")
    assert concept == Concept(BUSINESS_STATUS_SYSTEM, "delivered", "delivered", None)
    assert isinstance(issue, MappingIssue)
    assert (issue.severity, issue.code, issue.path) == ("warning", "unmapped-code", "task.businessStatus")
    assert "unknown business-status code 'delivered'" in issue.message


# ----------------------------------------------------------------------------- measurements

EXPECTED_UNITS = {
    "tnc_count": "10*6",
    "cd3_count": "10*6",
    "cd34_count": "10*6",
    "viability_pct": "%",
    "viable_cd3_pct": "%",
    "car_positive_pct": "%",
    "volume_ml": "mL",
    "vcn": "{copies}/{cell}",
    "sterility": None,
    "endotoxin_eu_ml": "{EU}/mL",
    "mycoplasma": None,
    "shipper_temperature": "Cel",
}


def test_every_domain_measurement_code_is_in_the_vocabulary(terminology: Terminology) -> None:
    assert set(MeasurementCode) <= set(terminology.measurement_codes())
    assert set(terminology.measurement_codes()) == set(EXPECTED_UNITS)


@pytest.mark.parametrize(("code", "unit"), sorted(EXPECTED_UNITS.items()))
def test_expected_ucum_unit(terminology: Terminology, code: str, unit: str | None) -> None:
    assert terminology.measurement(code).unit == unit
    assert terminology.measurement_own(code).unit == unit
    assert terminology.measurement_kind(code) == ("coded" if unit is None else "quantity")


def test_loinc_only_where_checked(terminology: Terminology) -> None:
    assert terminology.measurement("cd3_count") == Concept(
        LOINC_SYSTEM, "95836-3", "CD3 cells [#] in Blood product unit", "10*6")
    assert terminology.measurement("viable_cd3_pct") == Concept(
        LOINC_SYSTEM, "95827-2", "Viable CD3 cells/Cells.CD3 in Blood product unit", "%")
    codes = terminology.measurement_codes()
    loinc_mapped = {c for c in codes if terminology.measurement(c).system == LOINC_SYSTEM}
    assert loinc_mapped == {"cd3_count", "viable_cd3_pct"}
    for code in set(terminology.measurement_codes()) - loinc_mapped:
        concept = terminology.measurement(code)
        assert (concept.system, concept.code) == (MEASUREMENT_SYSTEM, code)
        assert concept == terminology.measurement_own(code)


def test_measurement_own_is_ours_even_when_loinc_exists(terminology: Terminology) -> None:
    assert terminology.measurement_own("cd3_count").system == MEASUREMENT_SYSTEM
    assert terminology.measurement_own("cd3_count").code == "cd3_count"


def test_unknown_measurement_raises_and_fallback_warns(terminology: Terminology) -> None:
    with pytest.raises(UnknownCode, match="unknown measurement code 'cd19_count'; expected one of: tnc_"):
        terminology.measurement("cd19_count")
    with pytest.raises(UnknownCode):
        terminology.measurement_kind("cd19_count")
    assert terminology.measurement_or_fallback("vcn") == (terminology.measurement("vcn"), None)
    concept, issue = terminology.measurement_or_fallback("cd19_count", path="event.data.measurements[0].code")
    assert concept == Concept(MEASUREMENT_SYSTEM, "cd19_count", "cd19_count", None)
    assert issue is not None and issue.severity == "warning" and issue.code == "unmapped-code"
    assert issue.path == "event.data.measurements[0].code"


def test_measurement_codesystem_is_a_valid_r4_codesystem(terminology: Terminology) -> None:
    resource = terminology.measurement_codesystem()
    CodeSystem.model_validate(resource)
    assert resource["url"] == MEASUREMENT_SYSTEM
    assert [c["code"] for c in resource["concept"]] == list(terminology.measurement_codes())


# ----------------------------------------------------------------------------- no invented codes


def test_every_loinc_code_is_in_the_allowlist(terminology: Terminology) -> None:
    allowlist = load_loinc_allowlist()
    assert terminology.loinc_codes() <= set(allowlist)
    for code in terminology.loinc_codes():
        assert allowlist[code]["source"].startswith("standards.md")
    for code, entry in allowlist.items():
        assert re.fullmatch(r"\d{1,6}-\d", code), code
        assert _loinc_check_digit(code.split("-")[0]) == code.split("-")[1], f"{code}: bad LOINC check digit"
        assert entry["display"].strip()


def _loinc_check_digit(number: str) -> str:
    """LOINC's mod 10 check digit (the Luhn variant LOINC publishes)."""
    digits = [int(d) for d in number]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return str((10 - total % 10) % 10)


def test_allowlisted_loinc_codes_appear_in_standards_notes() -> None:
    if not STANDARDS.exists():
        pytest.skip("the shared standards notes are not on this machine")
    notes = STANDARDS.read_text(encoding="utf-8")
    for code in load_loinc_allowlist():
        assert code in notes, f"{code} is allow-listed but not in standards.md"


#: The only SNOMED CT codes we emit (qualitative answers), each checked against a published value set.
CHECKED_SNOMED = {"260385009": "Negative", "10828004": "Positive", "260415000": "Not detected",
                  "260373001": "Detected"}


def test_qualitative_answers_are_the_checked_snomed_codes_only() -> None:
    answers = json.loads((DATA / "qualitative_results.json").read_text(encoding="utf-8"))
    assert answers["system"] == "http://snomed.info/sct"
    listed = {e["code"]: e["display"] for entries in answers["measurements"].values() for e in entries}
    assert listed == CHECKED_SNOMED
    assert all(e["source"] for entries in answers["measurements"].values() for e in entries)
    terminology = load_terminology()
    assert set(answers["measurements"]) == {c for c in terminology.measurement_codes()
                                            if terminology.measurement_kind(c) == "coded"}


def test_data_files_name_no_snomed_or_other_external_code_system() -> None:
    for path in DATA.glob("*.json"):
        if path.name in ("hl7_tables.json", "qualitative_results.json"):
            continue  # HL7 tables are the HL7v2 work's data; the SNOMED answers are checked above
        text = path.read_text(encoding="utf-8").lower()
        assert "snomed" not in text, path.name
        systems = set(re.findall(r'"(?:system|url|own_system)":\s*"([^"]+)"', text))
        assert systems <= {BUSINESS_STATUS_SYSTEM.lower(), MEASUREMENT_SYSTEM.lower()}, path.name
        json.loads(text)


def test_terminology_imports_nothing_from_gateway() -> None:
    code = ("import sys, terminology; terminology.load_terminology().measurement_or_fallback('x');"
            "bad = [m for m in sys.modules if m == 'gateway' or m.startswith('gateway.')];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
