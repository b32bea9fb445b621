"""BiologicallyDerivedProduct builder: the collected material and the final (manufactured) product.

R4 BiologicallyDerivedProduct has ``identifier`` (we carry the CoI, the ISBT 128 DIN and the lot),
``productCategory`` (``cells``), ``productCode``, ``status`` (available | unavailable),
``request`` (the ServiceRequest), ``parent`` (the final product's source material) and
``collection``.  It has no expiration element: the expiry travels as a Task input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from mappings.fhir.model import profile_meta, validated

__all__ = ["build_product"]


def build_product(
    product_id: str,
    *,
    identifiers: Sequence[dict[str, Any]],
    product_code: dict[str, Any],
    status: Literal["available", "unavailable"],
    service_request: dict[str, str],
    parents: Sequence[dict[str, str]] = (),
    collected_at: str | None = None,
    source: dict[str, str] | None = None,
    profile_version: str,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "BiologicallyDerivedProduct",
        "id": product_id,
        "meta": profile_meta(profile_version),
        "identifier": list(identifiers),
        "productCategory": "cells",
        "productCode": product_code,
        "status": status,
        "request": [service_request],
    }
    if parents:
        resource["parent"] = list(parents)
    if collected_at or source:
        collection: dict[str, Any] = {}
        if source:
            collection["source"] = source
        if collected_at:
            collection["collectedDateTime"] = collected_at
        resource["collection"] = collection
    return validated(resource)
