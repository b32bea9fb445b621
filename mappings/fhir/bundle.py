"""Transaction Bundle of PUT entries: how a translation looks to a FHIR server or a site."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mappings.fhir.model import validated

__all__ = ["transaction_bundle"]


def transaction_bundle(resources: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One PUT entry per resource, ``request.url = Type/id`` (ids are deterministic, so PUT is idempotent)."""
    return validated(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": resource,
                    "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
                }
                for resource in resources
            ],
        }
    )
