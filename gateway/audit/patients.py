"""Patient references for audit records: ``Patient/<id>``, the id the FHIR store gives the patient
(a uuid5 of the site's MRN system and the MRN; :mod:`mappings.ids`), never a name or an MRN."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from mappings.ids import party_system, resource_id
from mappings.profile.schema import SiteProfile

__all__ = ["patient_reference", "order_reference", "event_reference", "fhir_patients"]

_DEPTH = 4  # how deep a resource is searched for Patient references (Appointment.participant[].actor ...)
_FIELDS = ("subject", "for", "patient", "source", "actor", "collection", "participant", "beneficiary",
           "individual", "who")


def patient_reference(profiles: Mapping[str, SiteProfile], manufacturer_id: str, site_id: str,
                      mrn: str) -> str | None:
    """``Patient/<id>`` of the order's patient at ``site_id`` (None if the site has no profile)."""
    profile = profiles.get(site_id)
    if profile is None or not mrn:
        return None
    system = party_system(site_id, manufacturer_id, profile.patient.mrn_system)
    return "Patient/" + resource_id("Patient", system, mrn)


def order_reference(manufacturer_id: str, order_id: str) -> str:
    return f"order:{manufacturer_id}/{order_id}"


def event_reference(manufacturer_id: str, event_id: str) -> str:
    return f"event:{manufacturer_id}/{event_id}"


def _references(value: Any, depth: int, found: list[str]) -> None:
    if depth > _DEPTH:
        return
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str) and ref.startswith("Patient/"):
            found.append(ref)
        for key in _FIELDS:
            if key in value:
                _references(value[key], depth + 1, found)
    elif isinstance(value, list):
        for item in value[:100]:
            _references(item, depth + 1, found)


def fhir_patients(resources: Iterable[tuple[str, str, bytes]]) -> list[str]:
    """The patients the FHIR resources ``(type, id, body)`` are about: a Patient itself, and the
    Patient references of ``subject``, ``for``, ``patient``, product ``collection.source``, ..."""
    found: list[str] = []
    for rtype, rid, body in resources:
        if rtype == "Patient":
            found.append(f"Patient/{rid}")
            continue
        try:
            resource = orjson.loads(body)
        except orjson.JSONDecodeError:
            continue
        _references(resource, 0, found)
    return list(dict.fromkeys(found))
