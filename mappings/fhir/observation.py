"""Observation builder: measurements, release results and shipper temperatures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mappings.fhir.codes import INTERPRETATION_SYSTEM, OBSERVATION_CATEGORY_SYSTEM, UCUM_SYSTEM
from mappings.fhir.model import profile_meta, validated
from mappings.fhir.specification import Specification

__all__ = ["ObservationValue", "build_observation", "INTERPRETATION_DISPLAY"]

INTERPRETATION_DISPLAY = {"N": "Normal", "H": "High", "L": "Low", "A": "Abnormal"}


@dataclass(frozen=True)
class ObservationValue:
    """A numeric value with a UCUM code (``ucum`` False: the unit is display text only), a coded answer
    (``coding``, e.g. SNOMED CT Negative, with the text as the manufacturer sent it), or a text."""

    number: float | None = None
    unit: str | None = None
    ucum: bool = False
    text: str | None = None
    coding: tuple[str, str, str] | None = None  # (system, code, display) of a coded answer; text = as sent

    def as_fhir(self) -> dict[str, Any]:
        if self.coding is not None:
            system, code, display = self.coding
            concept: dict[str, Any] = {"coding": [{"system": system, "code": code, "display": display}]}
            if self.text:
                concept["text"] = self.text
            return {"valueCodeableConcept": concept}
        if self.number is None:
            return {"valueString": self.text or ""}
        quantity: dict[str, Any] = {"value": self.number}
        if self.unit:
            quantity["unit"] = self.unit
            if self.ucum:
                quantity["system"] = UCUM_SYSTEM
                quantity["code"] = self.unit
        return {"valueQuantity": quantity}


def _reference_range(spec: Specification, value: ObservationValue) -> dict[str, Any]:
    ranged: dict[str, Any] = {}
    for key, bound in (("low", spec.low), ("high", spec.high)):
        if bound is not None and value.number is not None:
            quantity: dict[str, Any] = {"value": bound}
            if value.unit and value.ucum:
                quantity.update(unit=value.unit, system=UCUM_SYSTEM, code=value.unit)
            ranged[key] = quantity
    ranged["text"] = spec.text  # R4B's element order: low, high, text
    return ranged


def build_observation(
    observation_id: str,
    *,
    code: dict[str, Any],
    value: ObservationValue,
    effective: str,
    subject: dict[str, str],
    based_on: dict[str, str],
    focus: dict[str, str] | None,
    performer: Sequence[dict[str, str]] = (),
    laboratory: bool = True,
    specification: Specification | None = None,
    interpretation: str | None = None,
    profile_version: str,
) -> dict[str, Any]:
    # Keys in R4B's element order, so that the dump is the input (see compiled_validation).
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": observation_id,
        "meta": profile_meta(profile_version),
        "basedOn": [based_on],
        "status": "final",
    }
    if laboratory:
        resource["category"] = [{"coding": [{"system": OBSERVATION_CATEGORY_SYSTEM, "code": "laboratory"}]}]
    resource["code"] = code
    resource["subject"] = subject
    if focus:
        resource["focus"] = [focus]
    resource["effectiveDateTime"] = effective
    if performer:
        resource["performer"] = list(performer)
    resource.update(value.as_fhir())
    if interpretation:
        resource["interpretation"] = [
            {
                "coding": [
                    {
                        "system": INTERPRETATION_SYSTEM,
                        "code": interpretation,
                        "display": INTERPRETATION_DISPLAY[interpretation],
                    }
                ]
            }
        ]
    if specification is not None:
        resource["referenceRange"] = [_reference_range(specification, value)]
    return validated(resource)
