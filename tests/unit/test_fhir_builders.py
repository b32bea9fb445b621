"""FHIR builders: specifications, ids, instants, bundles and structural validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from mappings.fhir.bundle import transaction_bundle
from mappings.fhir.model import UNVERSIONED, fhir_instant, profile_meta, validated
from mappings.fhir.observation import ObservationValue, build_observation
from mappings.fhir.specification import interpret, parse_specification
from mappings.ids import NPI_SYSTEM, resource_id


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        (">=80", 80, "N"),
        (">=80", 79.9, "L"),
        (">80", 80, "L"),
        ("<5", 4.99, "N"),
        ("<5", 5, "H"),
        ("<=5", 5, "N"),
        ("≥ 80", 81, "N"),
        ("1-5", 1, "N"),
        ("1-5", 5.1, "H"),
        ("1.5 - 5", 1.4, "L"),
        ("negative", "Negative", "N"),
        ("negative", "positive", "A"),
        ("not detected", "detected", "A"),
        (">=80", "85", "N"),
    ],
)
def test_interpretation_against_specification(spec: str, value: float | str, expected: str) -> None:
    parsed = parse_specification(spec)
    assert parsed is not None
    assert interpret(parsed, value) == expected


@pytest.mark.parametrize("spec", ["", "80%", "5-1", ">=", "== 4", "<5 or >9"])
def test_unparseable_specifications(spec: str) -> None:
    assert parse_specification(spec) is None


def test_incomparable_values() -> None:
    numeric, text = parse_specification(">=80"), parse_specification("negative")
    assert numeric is not None and text is not None
    assert interpret(numeric, "cloudy") is None
    assert interpret(text, 3.0) is None


def test_resource_ids_are_deterministic_and_distinct() -> None:
    first = resource_id("Practitioner", NPI_SYSTEM, "1234567893")
    assert first == resource_id("Practitioner", NPI_SYSTEM, "1234567893")
    assert first != resource_id("Patient", NPI_SYSTEM, "1234567893")
    assert first != resource_id("Practitioner", NPI_SYSTEM, "1245319599")
    assert len(first) == 36
    with pytest.raises(ValueError):
        resource_id("Patient", "", "x")


def test_fhir_instant_is_utc_and_stable() -> None:
    eastern = timezone(timedelta(hours=-5))
    assert fhir_instant(datetime(2026, 3, 12, 12, 10, tzinfo=eastern)) == "2026-03-12T17:10:00Z"
    assert fhir_instant(datetime(2026, 3, 12, 12, 10, 0, 250999, tzinfo=UTC)) == "2026-03-12T12:10:00.250000Z"
    under_a_millisecond = datetime(2026, 3, 12, 12, 10, 0, 999, tzinfo=UTC)
    assert fhir_instant(under_a_millisecond) == "2026-03-12T12:10:00Z"
    assert fhir_instant(datetime(2026, 3, 12, 12, 10)) == "2026-03-12T12:10:00Z"  # naive: taken as UTC


def test_profile_meta_tags_version() -> None:
    assert profile_meta("sha256:abc")["tag"][0]["code"] == "sha256:abc"
    assert profile_meta("")["tag"][0]["code"] == UNVERSIONED


def test_validated_rejects_structurally_invalid_resources() -> None:
    with pytest.raises(ValidationError):
        validated({"resourceType": "Task", "id": "x", "status": "requested", "intent": "order", "bogus": 1})


def test_observation_value_units() -> None:
    ucum = ObservationValue(number=4.1, unit="Cel", ucum=True).as_fhir()
    assert ucum == {
        "valueQuantity": {"value": 4.1, "unit": "Cel", "system": "http://unitsofmeasure.org", "code": "Cel"}
    }
    text_only = ObservationValue(number=3.0, unit="cells", ucum=False).as_fhir()
    assert text_only == {"valueQuantity": {"value": 3.0, "unit": "cells"}}
    assert ObservationValue(text="negative").as_fhir() == {"valueString": "negative"}


def test_observation_reference_range_from_specification() -> None:
    spec = parse_specification("1-5")
    obs = build_observation(
        "obs-1",
        code={"text": "VCN"},
        value=ObservationValue(number=2.0, unit="{copies}/{cell}", ucum=True),
        effective="2026-01-01T00:00:00Z",
        subject={"reference": "Patient/p"},
        based_on={"reference": "ServiceRequest/s"},
        focus=None,
        specification=spec,
        interpretation="N",
        profile_version="v1",
    )
    ranged = obs["referenceRange"][0]
    assert ranged["text"] == "1-5"
    assert ranged["low"]["value"] == 1.0 and ranged["high"]["value"] == 5.0
    assert obs["interpretation"][0]["coding"][0]["code"] == "N"


def test_transaction_bundle_puts_each_resource_by_id() -> None:
    patient = validated({"resourceType": "Patient", "id": "p1"})
    org = validated({"resourceType": "Organization", "id": "o1", "name": "Acme"})
    bundle = transaction_bundle([patient, org])
    Bundle.model_validate(bundle)
    assert bundle["type"] == "transaction"
    assert [e["request"] for e in bundle["entry"]] == [
        {"method": "PUT", "url": "Patient/p1"},
        {"method": "PUT", "url": "Organization/o1"},
    ]
    assert bundle["entry"][1]["resource"] == org
