"""The Procedure a site reported an infusion with (``POST /fhir/Procedure``), as the gateway stores it.

The site's Procedure is kept normalised: ``status`` ``completed``, ``basedOn`` the order's
ServiceRequest, ``subject`` the order's Patient, ``performedDateTime`` when the product was infused
(as the site sent it), ``performer`` the site's Organization, the site's notes, and the site request
id as ``identifier`` (system :data:`~mappings.fhir.site_request.SITE_REQUEST_SYSTEM`).  Whatever else
the site sent (its own ``id``, ``identifier``, ``code``, ``text``) is not kept.

Id: ``uuid5`` of ``Procedure|<order system>/<order id>/site-request|<request_id>``
(:func:`site_procedure_id`): the same request always gives the same Procedure, scoped by manufacturer
and order like every resource born from an order (:mod:`mappings.ids`).
"""

from __future__ import annotations

from typing import Any

from mappings.fhir.model import profile_meta, validated
from mappings.fhir.site_request import SITE_REQUEST_SYSTEM, site_request_key_system
from mappings.ids import resource_id

__all__ = ["site_procedure_id", "build_site_procedure"]


def site_procedure_id(manufacturer_id: str, order_id: str, request_id: str) -> str:
    """The stored Procedure's id: derived from the site request (a replay writes the same resource)."""
    return resource_id("Procedure", site_request_key_system(manufacturer_id, order_id), request_id)


def build_site_procedure(
    procedure_id: str,
    *,
    request_id: str,
    service_request: dict[str, str],
    patient: dict[str, str],
    performer: dict[str, str],
    performed: str,
    note: str | None,
    profile_version: str,
) -> dict[str, Any]:
    """The Procedure (keys in R4B's element order, so the dump is the input)."""
    resource: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": procedure_id,
        "meta": profile_meta(profile_version),
        "identifier": [{"system": SITE_REQUEST_SYSTEM, "value": request_id}],
        "basedOn": [service_request],
        "status": "completed",
        "subject": patient,
        "performedDateTime": performed,
        "performer": [{"actor": performer}],
    }
    if note:
        resource["note"] = [{"text": note}]
    return validated(resource)
