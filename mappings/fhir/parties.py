"""Patient, Organization and Practitioner builders."""

from __future__ import annotations

from typing import Any

from mappings.fhir.codes import IDENTIFIER_TYPE_SYSTEM
from mappings.fhir.model import fhir_date, profile_meta, validated
from mappings.ids import NPI_SYSTEM
from mappings.orders import Patient, Provider

__all__ = ["build_patient", "build_organization", "build_practitioner", "identifier"]


def identifier(system: str, value: str, type_code: str | None = None) -> dict[str, Any]:
    """A FHIR Identifier, typed with a v2-0203 code (MR, PLAC, FILL, NPI, ...) when given."""
    if type_code:  # keys in R4B's element order, so the dump is the input (compiled validation)
        return {"type": {"coding": [{"system": IDENTIFIER_TYPE_SYSTEM, "code": type_code}]},
                "system": system, "value": value}
    return {"system": system, "value": value}


def build_patient(
    patient_id: str, patient: Patient, *, mrn_system: str, demographics: bool, profile_version: str
) -> dict[str, Any]:
    """The patient by MRN; names, birth date and sex only when the site accepts demographics."""
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": patient_id,
        "meta": profile_meta(profile_version),
        "identifier": [identifier(mrn_system, patient.mrn, "MR")],
    }
    if demographics:
        resource["name"] = [{"use": "official", "family": patient.family, "given": list(patient.given)}]
        resource["gender"] = patient.sex
        resource["birthDate"] = fhir_date(patient.birth_date)
    return validated(resource)


def build_organization(
    organization_id: str, *, name: str, identifiers: list[dict[str, Any]], profile_version: str
) -> dict[str, Any]:
    return validated(
        {
            "resourceType": "Organization",
            "id": organization_id,
            "meta": profile_meta(profile_version),
            "identifier": identifiers,
            "active": True,
            "name": name,
        }
    )


def build_practitioner(practitioner_id: str, provider: Provider, *, profile_version: str) -> dict[str, Any]:
    return validated(
        {
            "resourceType": "Practitioner",
            "id": practitioner_id,
            "meta": profile_meta(profile_version),
            "identifier": [identifier(NPI_SYSTEM, provider.npi, "NPI")],
            "name": [{"family": provider.family, "given": list(provider.given)}],
        }
    )
