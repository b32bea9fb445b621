"""What translation reads about an order: the order, its manufacturer, product and site.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from mappings.domain import OrderStatus, StrictModel
from mappings.events import EventRecord
from mappings.orders import OrderIn

__all__ = ["ManufacturerRef", "ProductRef", "SiteRef", "OrderSnapshot"]


class ManufacturerRef(StrictModel):
    id: str
    name: str


class ProductRef(StrictModel):
    code: str
    name: str
    autologous: bool
    coi_format: Literal["isbt128", "manufacturer"]


class SiteRef(StrictModel):
    id: str
    name: str


class OrderSnapshot(StrictModel):
    """Everything translation may know about an order at the moment an event is accepted.

    ``events`` holds every accepted event in acceptance order, including the one being translated
    (``order.placed`` first).  ``status`` is the order's state after that event.
    ``coi`` is the CoI in its stored normal form.  ``site_order_number`` is the site's own order
    number once the site told us (HL7v2 ``NA``): every HL7v2 message to the site then carries it in
    ORC-3 / OBR-3 (filler order number) and the ServiceRequest carries it as an identifier.
    """

    order: OrderIn
    coi: str
    manufacturer: ManufacturerRef
    product: ProductRef
    site: SiteRef
    status: OrderStatus
    created_at: datetime
    events: tuple[EventRecord, ...]
    site_order_number: str | None = None
