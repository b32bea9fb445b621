"""The FHIR ``Flag`` of a milestone alert (issue 16): how an EHR (and the ``order-alert`` subscription
topic) sees an alert on one of its orders.

* ``id``: ``uuid5`` of ``Flag|<ALERT_SYSTEM>|<alert_id>`` (:func:`flag_id`): the same alert always
  yields the same resource, so each change is a new version of it;
* ``identifier``: the alert id in :data:`ALERT_SYSTEM`;
* ``status``: ``active`` while the alert is ``open`` or ``acknowledged``, ``inactive`` once ``resolved``;
* ``code``: the alert kind (``shipment-overdue``, ``temperature-excursion``, ``expiry-approaching``,
  ``release-failed``) in the gateway's :data:`ALERT_KIND_SYSTEM` CodeSystem, with its display;
  ``category``: the HL7 flag category ``admin``;
* ``subject``: the order's Patient reference (the one the order's other resources use; no name, no MRN);
* ``period.start`` the alert's ``raised_at``, ``period.end`` its ``resolved_at``;
* the extension :data:`ALERT_ORDER_EXTENSION` (``valueIdentifier``: the order id in the manufacturer's
  order system, :func:`mappings.ids.order_system`) names the order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from mappings.fhir.model import fhir_instant, validated
from mappings.ids import GATEWAY_BASE, order_system, reference, resource_id

__all__ = [
    "ALERT_SYSTEM",
    "ALERT_KIND_SYSTEM",
    "ALERT_ORDER_EXTENSION",
    "FLAG_CATEGORY_SYSTEM",
    "ALERT_KIND_DISPLAY",
    "flag_id",
    "build_alert_flag",
]

ALERT_SYSTEM: Final = f"{GATEWAY_BASE}/sid/alert"
ALERT_KIND_SYSTEM: Final = f"{GATEWAY_BASE}/CodeSystem/alert-kind"
ALERT_ORDER_EXTENSION: Final = f"{GATEWAY_BASE}/StructureDefinition/alert-order"
FLAG_CATEGORY_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/flag-category"
ALERT_KIND_DISPLAY: Final[dict[str, str]] = {
    "shipment-overdue": "Shipment overdue",
    "temperature-excursion": "Temperature excursion",
    "expiry-approaching": "Product expiry approaching",
    "release-failed": "Release failed",
    "certification-expiring": "Site certification expiring",
}


def flag_id(alert_id: str) -> str:
    return resource_id("Flag", ALERT_SYSTEM, alert_id)


def build_alert_flag(
    *,
    alert_id: str,
    kind: str,
    state: str,
    manufacturer_id: str,
    order_id: str,
    patient_id: str,
    raised_at: datetime,
    resolved_at: datetime | None,
) -> dict[str, Any]:
    """The validated ``Flag`` of an order's alert in ``state`` (``open``, ``acknowledged``, ``resolved``)."""
    if kind not in ALERT_KIND_DISPLAY:
        raise ValueError(f"unknown alert kind {kind!r}")
    period: dict[str, str] = {"start": fhir_instant(raised_at)}
    if resolved_at is not None:
        period["end"] = fhir_instant(resolved_at)
    flag: dict[str, Any] = {
        "resourceType": "Flag",
        "id": flag_id(alert_id),
        "extension": [
            {
                "url": ALERT_ORDER_EXTENSION,
                "valueIdentifier": {"system": order_system(manufacturer_id), "value": order_id},
            }
        ],
        "identifier": [{"system": ALERT_SYSTEM, "value": alert_id}],
        "status": "inactive" if state == "resolved" else "active",
        "category": [
            {"coding": [{"system": FLAG_CATEGORY_SYSTEM, "code": "admin", "display": "Administrative"}]}
        ],
        "code": {
            "coding": [{"system": ALERT_KIND_SYSTEM, "code": kind, "display": ALERT_KIND_DISPLAY[kind]}],
            "text": ALERT_KIND_DISPLAY[kind],
        },
        "subject": reference("Patient", patient_id),
        "period": period,
    }
    return validated(flag)
