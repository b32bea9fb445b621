"""Translation of the product side of an order: BiologicallyDerivedProducts, Observations, Provenance."""

from __future__ import annotations

from typing import Any

from mappings.domain import EventType, OrderStatus
from mappings.event_data import typed_data
from mappings.events import (
    CollectionCompletedData,
    CustodyTransferredData,
    Measurement,
    ReleaseFailedData,
    ReleasePassedData,
    ShipmentReceivedData,
)
from mappings.fhir.codes import PRODUCT_SYSTEM, UCUM_UNITS
from mappings.fhir.model import fhir_instant
from mappings.fhir.observation import ObservationValue, build_observation
from mappings.fhir.product import build_product
from mappings.fhir.provenance import build_custody_provenance
from mappings.fhir.specification import interpret, parse_specification
from mappings.ids import ISBT128_DIN_SYSTEM, reference
from mappings.result import MappingIssue
from mappings.translate_journey import Journey, Lot
from terminology import LOINC_SYSTEM, Concept, Terminology, UnknownCode

__all__ = ["build_products", "build_event_resources", "product_coding", "TEMPERATURE_CODE"]

TEMPERATURE_CODE = "shipper_temperature"
_RELEASED_STATUSES = frozenset(
    {
        OrderStatus.released,
        OrderStatus.shipped,
        OrderStatus.received,
        OrderStatus.infusion_scheduled,
    }
)


def product_coding(journey: Journey) -> dict[str, Any]:
    """The manufacturer's product in our product CodeSystem."""
    product = journey.snapshot.product
    return {
        "system": f"{PRODUCT_SYSTEM}/{journey.snapshot.manufacturer.id}",
        "code": product.code,
        "display": product.name,
    }


def _product_ref(product_id: str, display: str) -> dict[str, str]:
    return reference("BiologicallyDerivedProduct", product_id, display)


def _lot_available(journey: Journey, lot: Lot) -> bool:
    if lot is not journey.current_lot or journey.event.status_after not in _RELEASED_STATUSES:
        return False
    release = lot.release
    return release is not None and (
        release.type is EventType.release_passed or release.data.get("disposition") == "exception_release"
    )


def build_products(journey: Journey) -> list[dict[str, Any]]:
    """One BDP per collection (starting material) and one per manufactured lot (final product)."""
    version = journey.profile.version
    resources = []
    material_refs = []
    manufacturing_began = bool(journey.lots)
    for collection in journey.collections:
        identifiers = [journey.coi_identifier]
        if collection.din:
            identifiers.append({"system": ISBT128_DIN_SYSTEM, "value": collection.din})
        material_refs.append(_product_ref(collection.product_id, "Collected starting material"))
        resources.append(
            build_product(
                collection.product_id,
                identifiers=identifiers,
                product_code={"text": "Apheresis collection (starting material)"},
                status="unavailable" if manufacturing_began else "available",
                service_request=journey.service_request_ref,
                collected_at=fhir_instant(collection.collected_at),
                source=journey.patient_ref,
                profile_version=version,
            )
        )
    for lot in journey.lots:
        resources.append(
            build_product(
                lot.product_id,
                identifiers=[journey.coi_identifier, {"system": journey.lot_system, "value": lot.lot}],
                product_code={"coding": [product_coding(journey)], "text": journey.snapshot.product.name},
                status="available" if _lot_available(journey, lot) else "unavailable",
                service_request=journey.service_request_ref,
                parents=material_refs,
                profile_version=version,
            )
        )
    return resources


# --------------------------------------------------------------------------- observations


def _measurement_code(
    code: str, journey: Journey, terminology: Terminology, path: str
) -> tuple[dict[str, Any], str | None, list[MappingIssue]]:
    """CodeableConcept (site override first, then LOINC or ours, then ours) and the expected UCUM unit."""
    concept, issue = terminology.measurement_or_fallback(code, path)
    issues = [issue] if issue else []
    codings = []
    override = journey.profile.measurement_codes.get(code)
    if override is not None:
        codings.append({k: v for k, v in override.model_dump().items() if v is not None})
    codings.append({"system": concept.system, "code": concept.code, "display": concept.display})
    if concept.system == LOINC_SYSTEM:
        try:
            own = terminology.measurement_own(code)
            codings.append({"system": own.system, "code": own.code, "display": own.display})
        except UnknownCode:
            pass
    return {"coding": codings, "text": codings[0].get("display") or concept.display}, concept.unit, issues


def _value(
    raw: float | str, given_unit: str | None, expected_unit: str | None, path: str
) -> tuple[ObservationValue, list[MappingIssue]]:
    issues = []
    if isinstance(raw, str):
        try:
            number = float(raw)
        except ValueError:
            return ObservationValue(text=raw), []
        if expected_unit is None:
            return ObservationValue(text=raw), []
    else:
        number = float(raw)
    unit = given_unit or expected_unit
    if given_unit and expected_unit and given_unit != expected_unit:
        issues.append(
            MappingIssue(
                "warning",
                "unit-mismatch",
                f"{path}.unit",
                f"unit {given_unit!r} differs from the expected {expected_unit!r}; sent as given",
            )
        )
    if unit and unit not in UCUM_UNITS:
        issues.append(
            MappingIssue(
                "warning",
                "non-ucum-unit",
                f"{path}.unit",
                f"unit {unit!r} is not a UCUM unit we emit; sent as text only",
            )
        )
        return ObservationValue(number=number, unit=unit, ucum=False), issues
    return ObservationValue(number=number, unit=unit, ucum=unit is not None), issues


def _coded_answer(
    terminology: Terminology, measurement: Measurement, path: str, issues: list[MappingIssue]
) -> Concept | None:
    """The coded answer of a qualitative result (None for numbers and for text with no answer)."""
    code = measurement.code.value
    try:
        coded = terminology.measurement_kind(code) == "coded"
    except UnknownCode:
        return None
    if not coded or not isinstance(measurement.value, str):
        return None
    answer = terminology.qualitative_result(code, measurement.value)
    if answer is None:
        issues.append(
            MappingIssue(
                "warning",
                "unmapped-result",
                f"{path}.value",
                f"the result is not one of the coded answers for {code}; sent as text",
            )
        )
    return answer


def _measurement_observation(
    journey: Journey,
    terminology: Terminology,
    measurement: Measurement,
    index: int,
    path: str,
    *,
    effective: str,
    focus: dict[str, str] | None,
    performer: list[dict[str, str]],
) -> tuple[dict[str, Any], list[MappingIssue]]:
    code, expected_unit, issues = _measurement_code(
        measurement.code.value, journey, terminology, f"{path}.code"
    )
    value, value_issues = _value(measurement.value, measurement.unit, expected_unit, path)
    issues += value_issues
    answer = _coded_answer(terminology, measurement, path, issues)
    if answer is not None:  # the same SNOMED CT coding as OBX-5 (mappings.hl7v2.results)
        value = ObservationValue(
            text=str(measurement.value), coding=(answer.system, answer.code, answer.display)
        )
    spec = parse_specification(measurement.specification) if measurement.specification else None
    flag = None
    if measurement.specification and spec is None:
        issues.append(
            MappingIssue(
                "warning",
                "unparsed-specification",
                f"{path}.specification",
                f"specification {measurement.specification!r} is not understood; no interpretation sent",
            )
        )
    elif spec is not None and answer is not None and (
        expected := terminology.qualitative_result(measurement.code.value, measurement.specification or "")
    ) is not None:
        flag = "N" if expected.code == answer.code else "A"  # "negative" and "not detected" agree
    elif spec is not None:
        flag = interpret(spec, measurement.value)
        if flag is None:
            issues.append(
                MappingIssue(
                    "warning",
                    "incomparable-specification",
                    f"{path}.specification",
                    "value and specification cannot be compared; no interpretation sent",
                )
            )
    resource = build_observation(
        journey.event_resource_id("Observation", f"/{index}/{measurement.code.value}"),
        code=code,
        value=value,
        effective=effective,
        subject=journey.patient_ref,
        based_on=journey.service_request_ref,
        focus=focus,
        performer=performer,
        specification=spec,
        interpretation=flag,
        profile_version=journey.profile.version,
    )
    return resource, issues


def _temperature(
    journey: Journey,
    terminology: Terminology,
    celsius: float,
    *,
    effective: str,
    focus: dict[str, str] | None,
    path: str,
) -> tuple[dict[str, Any], list[MappingIssue]]:
    code, _, issues = _measurement_code(TEMPERATURE_CODE, journey, terminology, path)
    resource = build_observation(
        journey.event_resource_id("Observation", "/temperature"),
        code=code,
        value=ObservationValue(number=celsius, unit="Cel", ucum=True),
        effective=effective,
        subject=journey.patient_ref,
        based_on=journey.service_request_ref,
        focus=focus,
        laboratory=False,
        profile_version=journey.profile.version,
    )
    return resource, issues


def _lot_ref(
    journey: Journey, lot: Lot | None, path: str, issues: list[MappingIssue]
) -> dict[str, str] | None:
    if lot is None:
        issues.append(
            MappingIssue(
                "warning",
                "no-product",
                path,
                "no manufactured lot is known; the result is not linked to a product",
            )
        )
        return None
    return _product_ref(lot.product_id, f"Lot {lot.lot}")


def build_event_resources(
    journey: Journey, terminology: Terminology
) -> tuple[list[dict[str, Any]], list[MappingIssue]]:
    """Observations and Provenance born from the translated event itself (also when it is late)."""
    event = journey.event
    data = typed_data(event)
    resources: list[dict[str, Any]] = []
    issues: list[MappingIssue] = []
    if isinstance(data, CollectionCompletedData):
        collection = next(c for c in journey.collections if c.event.event_id == event.event_id)
        focus = _product_ref(collection.product_id, "Collected starting material")
        for i, m in enumerate(data.measurements):
            obs, found = _measurement_observation(
                journey,
                terminology,
                m,
                i,
                f"event.data.measurements[{i}]",
                effective=fhir_instant(data.collected_at),
                focus=focus,
                performer=[],
            )
            resources.append(obs)
            issues += found
    elif isinstance(data, ReleasePassedData | ReleaseFailedData):
        lot_focus = _lot_ref(journey, journey.lot_at(event), "event.data.results", issues)
        for i, m in enumerate(data.results):
            obs, found = _measurement_observation(
                journey,
                terminology,
                m,
                i,
                f"event.data.results[{i}]",
                effective=fhir_instant(event.occurred_at),
                focus=lot_focus,
                performer=[journey.manufacturer_ref],
            )
            resources.append(obs)
            issues += found
    elif isinstance(data, CustodyTransferredData):
        product_id = journey.product_in_custody(data.at)
        if product_id is None:
            issues.append(
                MappingIssue(
                    "warning",
                    "no-product",
                    "event.data",
                    "custody transfer before any material is known; provenance targets the order",
                )
            )
            target = journey.service_request_ref
        else:
            target = reference("BiologicallyDerivedProduct", product_id)
        resources.append(
            build_custody_provenance(
                journey.event_resource_id("Provenance"),
                target=target,
                occurred=fhir_instant(data.at),
                recorded=fhir_instant(event.accepted_at),
                from_party=data.from_party,
                to_party=data.to_party,
                location=data.location,
                container_id=data.container_id,
                profile_version=journey.profile.version,
            )
        )
        if data.temperature_c is not None:
            obs, found = _temperature(
                journey,
                terminology,
                data.temperature_c,
                effective=fhir_instant(data.at),
                focus=target if product_id else None,
                path="event.data.temperature_c",
            )
            resources.append(obs)
            issues += found
    elif isinstance(data, ShipmentReceivedData) and data.temperature_c is not None:
        lot_focus = _lot_ref(journey, journey.current_lot, "event.data.temperature_c", issues)
        obs, found = _temperature(
            journey,
            terminology,
            data.temperature_c,
            effective=fhir_instant(data.received_at),
            focus=lot_focus,
            path="event.data.temperature_c",
        )
        resources.append(obs)
        issues += found
    return resources, issues
