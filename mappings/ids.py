"""Deterministic FHIR resource ids and the identifier systems the gateway itself owns.

A resource id is ``uuid5(NAMESPACE, "<ResourceType>|<system>|<value>")`` of the resource's business
identifier, so the same order, product, measurement or handoff always gets the same id and replaying
an event cannot create a second resource.  Ids are keyed on systems the gateway owns (or on stable
global ones such as the NPI), not on systems a site profile may rename, so editing a profile never
re-keys stored resources.

**No id is shared between tenants** (a tenant is a site and a manufacturer): whatever one
manufacturer's order writes must never become a version of a resource another site or
manufacturer reads.  So every id is scoped:

* the parties of an order (Patient, Practitioner, the manufacturer's and the site's Organization)
  by site and manufacturer (:func:`party_system`);
* the ServiceRequest and the Task by the manufacturer's order id (:func:`order_system`; an order has
  one site);
* everything born from one order's events by that order: Observations and Provenance by event
  (:func:`event_system`), the collected material by its DIN and the final product by its lot within
  the order (:func:`product_system`).  A DIN or a lot stays an identifier of the product (systems
  :data:`ISBT128_DIN_SYSTEM`, :func:`lot_system`), it no longer keys it: the same DIN sent on two
  orders (refused since, ``din-in-use``) or a lot number reused at two sites yields two resources.

Manufacturer, site, order and event ids contain neither ``/`` nor ``|``, so the name
``type|system|value`` of two different scopes never coincides.  The one resource shared by all
tenants is the business-status CodeSystem (``gateway.fhir_api.shared``), which carries no tenant data.
"""

from __future__ import annotations

import functools
import uuid

__all__ = [
    "NAMESPACE",
    "GATEWAY_BASE",
    "NPI_SYSTEM",
    "ISBT128_COI_SYSTEM",
    "ISBT128_DIN_SYSTEM",
    "SITE_SYSTEM",
    "MANUFACTURER_SYSTEM",
    "order_system",
    "coi_system",
    "lot_system",
    "event_system",
    "product_system",
    "party_system",
    "resource_id",
    "reference",
]

GATEWAY_BASE = "https://cgt-gateway.example.org/fhir"
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, GATEWAY_BASE)

NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
ISBT128_COI_SYSTEM = "https://www.isbt128.org/uri/ChainOfIdentity"
ISBT128_DIN_SYSTEM = "https://www.isbt128.org/uri/DonationIdentificationNumber"
SITE_SYSTEM = f"{GATEWAY_BASE}/sid/site"
MANUFACTURER_SYSTEM = f"{GATEWAY_BASE}/sid/manufacturer"


def order_system(manufacturer_id: str) -> str:
    """The system of a manufacturer's order ids (order ids are unique per manufacturer)."""
    return f"{MANUFACTURER_SYSTEM}/{manufacturer_id}/order"


def coi_system(manufacturer_id: str, coi_format: str) -> str:
    """ISBT 128 CoIs share one global system; manufacturer-format CoIs are scoped to the manufacturer."""
    if coi_format == "isbt128":
        return ISBT128_COI_SYSTEM
    return f"{MANUFACTURER_SYSTEM}/{manufacturer_id}/coi"


def lot_system(manufacturer_id: str) -> str:
    return f"{MANUFACTURER_SYSTEM}/{manufacturer_id}/lot"


def event_system(manufacturer_id: str, order_id: str) -> str:
    """Event ids are unique within one order; resources born from one event are keyed under it."""
    return f"{order_system(manufacturer_id)}/{order_id}/event"


def product_system(manufacturer_id: str, order_id: str, key: str) -> str:
    """The id-derivation system of one order's products: ``key`` ``din`` (the collected material,
    by its DIN) or ``lot`` (the final product, by its lot).  Never an identifier in a resource."""
    return f"{order_system(manufacturer_id)}/{order_id}/product/{key}"


def party_system(site_id: str, manufacturer_id: str, system: str) -> str:
    """``system`` as the orders of one manufacturer at one site see it.  The parties of an order
    (the patient, the ordering practitioner, the manufacturer, the site itself) get one resource per
    site and manufacturer: each is built from that manufacturer's orders and that site's profile
    alone, so another site's or manufacturer's orders never add versions to it nor show in its
    history (not even when they started)."""
    return f"{SITE_SYSTEM}/{site_id}/party/{manufacturer_id}|{system}"


def resource_id(resource_type: str, system: str, value: str) -> str:
    """``uuid5`` of ``type|system|value``: the same business identifier always yields the same id."""
    if not resource_type or not system or not value:
        raise ValueError("resource_id needs a resource type, a system and a value")
    return _uuid5(f"{resource_type}|{system}|{value}")


@functools.lru_cache(maxsize=8192)  # an order's ids repeat at every one of its events
def _uuid5(name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, name))


def reference(resource_type: str, resource_id_: str, display: str | None = None) -> dict[str, str]:
    """A relative FHIR reference ``{"reference": "Type/id"}`` (with an optional display)."""
    ref = {"reference": f"{resource_type}/{resource_id_}"}
    if display:
        ref["display"] = display
    return ref
