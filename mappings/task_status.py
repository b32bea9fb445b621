"""Lifecycle status -> FHIR ``Task.status``, ``ServiceRequest.status`` and the statusReason source.

The table is data: one row per :class:`~mappings.domain.OrderStatus`.  ``Task.businessStatus``
carries the CGT milestone itself (our CodeSystem, overridable per site), so ``Task.status`` only
says where the fulfilment stands in FHIR's generic workflow:

* ``requested`` until the manufacturer confirms, ``accepted`` until material is collected,
  ``in-progress`` from collection to infusion, ``completed`` once infused;
* ``on-hold`` / ``cancelled`` / ``failed`` for the side states, with the reason taken from the event
  that put the order there (``reason_event``).

``ServiceRequest.status`` follows FHIR request-status: ``active`` while the order runs, ``on-hold``,
``completed`` once infused, ``revoked`` when cancelled or when manufacturing failed for good.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from mappings.domain import EventType, OrderStatus, RequestStatus, TaskStatus

__all__ = ["StatusRow", "STATUS_TABLE", "TERMINAL_STATUSES", "STAGE_ORDER", "status_row", "stage_index"]



@dataclass(frozen=True)
class StatusRow:
    task_status: TaskStatus
    service_request_status: RequestStatus
    # The event whose ``data.reason`` becomes Task.statusReason (None: no statusReason).
    reason_event: EventType | None = None


STATUS_TABLE: MappingProxyType[OrderStatus, StatusRow] = MappingProxyType(
    {
        OrderStatus.placed: StatusRow("requested", "active"),
        OrderStatus.confirmed: StatusRow("accepted", "active"),
        OrderStatus.apheresis_scheduled: StatusRow("accepted", "active"),
        OrderStatus.collected: StatusRow("in-progress", "active"),
        OrderStatus.manufacturing: StatusRow("in-progress", "active"),
        OrderStatus.manufactured: StatusRow("in-progress", "active"),
        OrderStatus.released: StatusRow("in-progress", "active"),
        OrderStatus.shipped: StatusRow("in-progress", "active"),
        OrderStatus.received: StatusRow("in-progress", "active"),
        OrderStatus.infusion_scheduled: StatusRow("in-progress", "active"),
        OrderStatus.infused: StatusRow("completed", "completed"),
        OrderStatus.on_hold: StatusRow("on-hold", "on-hold", EventType.order_on_hold),
        OrderStatus.cancelled: StatusRow("cancelled", "revoked", EventType.order_cancelled),
        OrderStatus.failed: StatusRow("failed", "revoked", EventType.release_failed),
    }
)

TERMINAL_STATUSES: frozenset[OrderStatus] = frozenset(
    {OrderStatus.infused, OrderStatus.cancelled, OrderStatus.failed}
)

# The main path in stage order; side states (on_hold) have no stage of their own.
STAGE_ORDER: tuple[OrderStatus, ...] = (
    OrderStatus.placed,
    OrderStatus.confirmed,
    OrderStatus.apheresis_scheduled,
    OrderStatus.collected,
    OrderStatus.manufacturing,
    OrderStatus.manufactured,
    OrderStatus.released,
    OrderStatus.shipped,
    OrderStatus.received,
    OrderStatus.infusion_scheduled,
    OrderStatus.infused,
)


def status_row(status: OrderStatus) -> StatusRow:
    return STATUS_TABLE[status]


def stage_index(status: OrderStatus) -> int | None:
    """Position on the main path, or None for on_hold/cancelled/failed."""
    try:
        return STAGE_ORDER.index(status)
    except ValueError:
        return None
