"""Events as posted (``POST /v1/orders/{order_id}/events``) and as recorded: the data model of
each event type (:data:`EVENT_DATA_MODELS`), measurements, :class:`EventRecord`.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    Field,
    PlainValidator,
    ValidationInfo,
    field_validator,
)

from mappings.domain import EventType, MeasurementCode, OrderStatus, StrictModel
from mappings.orders import Identifier
from mappings.strict_types import Instant, Number

__all__ = [
    "RESERVED_EVENT_ID_PREFIX",
    "MeasurementValue",
    "Measurement",
    "Text",
    "OrderPlacedData",
    "OrderConfirmedData",
    "ApheresisScheduledData",
    "ApheresisRescheduledData",
    "CollectionCompletedData",
    "CustodyTransferredData",
    "ManufacturingStartedData",
    "ManufacturingCompletedData",
    "ReleasePassedData",
    "ReleaseFailedData",
    "ShipmentDispatchedData",
    "ShipmentReceivedData",
    "InfusionScheduledData",
    "ProductInfusedData",
    "OrderOnHoldData",
    "OrderResumedData",
    "OrderCancelledData",
    "EVENT_DATA_MODELS",
    "EventIn",
    "EventRecord",
]


def _measurement_value(value: object) -> float | str:
    """A finite number (stored as a float) or a text result; a boolean is neither."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number or a text result")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    return number


MeasurementValue = Annotated[
    float | str, PlainValidator(_measurement_value, json_schema_input_type=float | str)
]


class Measurement(StrictModel):
    """A measurement or release result. ``specification`` is e.g. ``>=80``, ``<5``, ``1-5``, ``negative``."""

    code: MeasurementCode
    value: MeasurementValue
    unit: Annotated[str, Field(max_length=32)] | None = None
    specification: Annotated[str, Field(max_length=64)] | None = None


Text = Annotated[str, Field(min_length=1, max_length=1000)]


class OrderPlacedData(StrictModel):
    pass


class OrderConfirmedData(StrictModel):
    slot_id: Text | None = None


def _end_not_before_start(end: datetime | None, info: ValidationInfo) -> datetime | None:
    start = info.data.get("start")
    if end is not None and isinstance(start, datetime) and end < start:
        raise ValueError(f"must not be before start ({start.isoformat()})")
    return end


class ApheresisScheduledData(StrictModel):
    start: Instant
    end: Instant | None = None
    location: Text | None = None

    _end = field_validator("end")(_end_not_before_start)


class ApheresisRescheduledData(StrictModel):
    start: Instant
    end: Instant | None = None
    reason: Text | None = None

    _end = field_validator("end")(_end_not_before_start)


class CollectionCompletedData(StrictModel):
    collected_at: Instant
    din: Annotated[str, Field(min_length=1, max_length=20)] | None = None
    measurements: list[Measurement] = []


class CustodyTransferredData(StrictModel):
    from_party: Text
    to_party: Text
    at: Instant
    location: Text | None = None
    temperature_c: Number | None = None
    container_id: Text | None = None


class ManufacturingStartedData(StrictModel):
    lot: Text | None = None


class ManufacturingCompletedData(StrictModel):
    lot: Text
    expires_at: Instant


class ReleasePassedData(StrictModel):
    results: list[Measurement] = []


class ReleaseFailedData(StrictModel):
    results: list[Measurement] = []
    reason: Text
    disposition: Literal["remanufacture", "exception_release", "not_releasable"]


class ShipmentDispatchedData(StrictModel):
    carrier: Text | None = None
    tracking_number: Text | None = None
    expected_at: Instant | None = None


class ShipmentReceivedData(StrictModel):
    received_at: Instant
    temperature_c: Number | None = None


class InfusionScheduledData(StrictModel):
    start: Instant


class ProductInfusedData(StrictModel):
    infused_at: Instant


class OrderOnHoldData(StrictModel):
    reason: Text


class OrderResumedData(StrictModel):
    pass


class OrderCancelledData(StrictModel):
    reason: Text


EVENT_DATA_MODELS: dict[EventType, type[StrictModel]] = {
    EventType.order_placed: OrderPlacedData,
    EventType.order_confirmed: OrderConfirmedData,
    EventType.apheresis_scheduled: ApheresisScheduledData,
    EventType.apheresis_rescheduled: ApheresisRescheduledData,
    EventType.collection_completed: CollectionCompletedData,
    EventType.custody_transferred: CustodyTransferredData,
    EventType.manufacturing_started: ManufacturingStartedData,
    EventType.manufacturing_completed: ManufacturingCompletedData,
    EventType.release_passed: ReleasePassedData,
    EventType.release_failed: ReleaseFailedData,
    EventType.shipment_dispatched: ShipmentDispatchedData,
    EventType.shipment_received: ShipmentReceivedData,
    EventType.infusion_scheduled: InfusionScheduledData,
    EventType.product_infused: ProductInfusedData,
    EventType.order_on_hold: OrderOnHoldData,
    EventType.order_resumed: OrderResumedData,
    EventType.order_cancelled: OrderCancelledData,
}


#: The event ids of site requests applied by the gateway (``site-request-<request_id>``,
#: :mod:`gateway.inbound`): a manufacturer's event may not begin with it (any case).
RESERVED_EVENT_ID_PREFIX = "site-request-"


class EventIn(StrictModel):
    """Body of ``POST /v1/orders/{order_id}/events``.

    ``data`` arrives as a mapping; :meth:`typed_data` validates it against the model for ``type``.
    The API layer calls it so that errors point at ``/data/<field>``.
    """

    event_id: Identifier
    type: EventType
    occurred_at: Instant
    coi: Annotated[str, Field(min_length=1, max_length=64)]
    data: dict[str, Any] = {}

    @field_validator("event_id")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.lower().startswith(RESERVED_EVENT_ID_PREFIX):
            raise ValueError(f"event ids beginning with '{RESERVED_EVENT_ID_PREFIX}' are reserved for the "
                             "events the gateway records for site requests")
        return value

    @field_validator("type")
    @classmethod
    def _not_internal(cls, value: EventType) -> EventType:
        if value is EventType.order_placed:
            raise ValueError("order.placed is created by POST /v1/orders, not posted as an event")
        return value

    def typed_data(self) -> StrictModel:
        return EVENT_DATA_MODELS[self.type].model_validate(self.data)


class EventRecord(StrictModel):
    """An accepted event as stored: the posted event plus what the gateway decided about it."""

    event_id: str
    type: EventType
    occurred_at: AwareDatetime
    coi: str
    data: dict[str, Any]
    sequence: int  # 0 for order.placed, then 1, 2, ... in acceptance order
    accepted_at: datetime
    late: bool = False  # a stage behind the current one: recorded and translated, state unchanged
    status_after: OrderStatus
    # Who reported it: the manufacturer (POST /v1/orders/{id}/events) or the site (a site request
    # applied by the gateway, see gateway.inbound: event_id ``site-request-<request_id>``).
    source: Literal["manufacturer", "site"] = "manufacturer"

    def typed_data(self) -> StrictModel:
        return EVENT_DATA_MODELS[self.type].model_validate(self.data)
