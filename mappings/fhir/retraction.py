"""FHIR builders for a retracted event (entered in error): the NULLIFY Provenance and the marks.

R4 has ``entered-in-error`` for Observation (and Task/ServiceRequest) but not for
BiologicallyDerivedProduct (``available | unavailable``) nor Provenance (no status at all), so:

* an Observation born from the retracted event gets a new version with ``status: entered-in-error``;
* a product that only the retracted event created gets ``status: unavailable`` and our
  ``entered-in-error`` extension (when and why); an EHR that does not know the extension still
  sees a product that cannot be used;
* one new Provenance per retraction records it: ``activity`` is ``NULLIFY`` (HL7 v3 DataOperation,
  "post an event to indicate that a previous event was in error"), ``target`` lists the Task and
  every resource the retracted event made (its Observations, its custody Provenance, the products
  it alone created), ``reason.text`` the manufacturer's reason, ``agent`` the manufacturer, and
  ``entity`` (role ``removal``) the retracted event by its identifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mappings.fhir.codes import PARTICIPANT_TYPE_SYSTEM
from mappings.fhir.model import profile_meta, validated
from mappings.ids import GATEWAY_BASE

__all__ = [
    "DATA_OPERATION_SYSTEM",
    "ENTERED_IN_ERROR_EXTENSION",
    "mark_entered_in_error",
    "build_retraction_provenance",
]

DATA_OPERATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
ENTERED_IN_ERROR_EXTENSION = f"{GATEWAY_BASE}/StructureDefinition/entered-in-error"


def _error_extension(retracted_at: str, reason: str) -> dict[str, Any]:
    return {
        "url": ENTERED_IN_ERROR_EXTENSION,
        "extension": [
            {"url": "retractedAt", "valueDateTime": retracted_at},
            {"url": "reason", "valueString": reason},
        ],
    }


def mark_entered_in_error(resource: dict[str, Any], *, retracted_at: str, reason: str) -> dict[str, Any]:
    """A new version of ``resource`` saying it was entered in error (see the module docstring)."""
    kind = resource["resourceType"]
    if kind == "Observation":
        return validated({**resource, "status": "entered-in-error"})
    if kind == "BiologicallyDerivedProduct":
        head: dict[str, Any] = {k: resource[k] for k in ("resourceType", "id", "meta") if k in resource}
        rest = {k: v for k, v in resource.items() if k not in head and k != "extension"}
        marked: dict[str, Any] = {**head, "extension": [_error_extension(retracted_at, reason)], **rest,
                                  "status": "unavailable"}
        return validated(marked)
    raise ValueError(f"a {kind} is not marked; the NULLIFY Provenance targets it")


def build_retraction_provenance(
    provenance_id: str,
    *,
    targets: Sequence[dict[str, str]],
    retracted_at: str,
    reason: str,
    author: dict[str, str],
    event: dict[str, Any],
    profile_version: str,
) -> dict[str, Any]:
    """The Provenance recording one retraction (``event``: a Reference by identifier to the event)."""
    resource: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": provenance_id,
        "meta": profile_meta(profile_version),
        "target": list(targets),
        "occurredDateTime": retracted_at,
        "recorded": retracted_at,
        "reason": [{"text": reason}],
        "activity": {
            "coding": [{"system": DATA_OPERATION_SYSTEM, "code": "NULLIFY", "display": "nullify"}],
            "text": "Event entered in error and retracted by the manufacturer",
        },
        "agent": [{
            "type": {"coding": [{"system": PARTICIPANT_TYPE_SYSTEM, "code": "author", "display": "Author"}]},
            "who": author,
        }],
        "entity": [{"role": "removal", "what": event}],
    }
    return validated(resource)
