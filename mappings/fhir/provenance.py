"""Provenance builder: one resource per custody handoff of a product."""

from __future__ import annotations

from typing import Any

from mappings.fhir.codes import PARTICIPANT_TYPE_SYSTEM
from mappings.fhir.model import profile_meta, validated

__all__ = ["build_custody_provenance"]


def _agent(code: str, display: str, who: str) -> dict[str, Any]:
    return {
        "type": {"coding": [{"system": PARTICIPANT_TYPE_SYSTEM, "code": code, "display": display}]},
        "who": {"display": who},
    }


def build_custody_provenance(
    provenance_id: str,
    *,
    target: dict[str, str],
    occurred: str,
    recorded: str,
    from_party: str,
    to_party: str,
    location: str | None,
    container_id: str | None,
    profile_version: str,
) -> dict[str, Any]:
    """``to_party`` becomes the custodian; ``from_party`` performed the handoff."""
    resource: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": provenance_id,
        "meta": profile_meta(profile_version),
        "target": [target],
        "occurredDateTime": occurred,
        "recorded": recorded,
    }
    if location:  # keys in R4B's element order, so the dump is the input (compiled validation)
        resource["location"] = {"display": location}
    resource["activity"] = {"text": "Custody transfer"}
    resource["agent"] = [
        _agent("custodian", "Custodian", to_party),
        _agent("performer", "Performer", from_party),
    ]
    resource["entity"] = [{"role": "source", "what": target}]
    if container_id:
        resource["entity"][0]["what"] = {**target, "display": f"in container {container_id}"}
    return validated(resource)
