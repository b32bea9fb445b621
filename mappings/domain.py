"""The domain vocabulary shared by every layer: orders, events, and the order snapshot.

These are the plain data contracts that flow along the arrows of the architecture:
the API validates request bodies into :class:`OrderIn` / :class:`EventIn`, the lifecycle
decides, the store keeps :class:`EventRecord` rows, and ``mappings.translate`` receives an
:class:`OrderSnapshot` plus the :class:`EventRecord` being translated.  Nothing here does I/O.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mappings.strict_types import DATETIME_FORM, Day, Instant, Number

__all__ = [
    "MAX_UNKNOWN_FIELDS",
    "StrictModel",
    "OrderStatus",
    "EventType",
    "MANUFACTURER_EVENT_TYPES",
    "MeasurementCode",
    "Patient",
    "Provider",
    "Requested",
    "OrderIn",
    "Measurement",
    "EventIn",
    "EVENT_DATA_MODELS",
    "EventRecord",
    "ManufacturerRef",
    "ProductRef",
    "SiteRef",
    "OrderSnapshot",
    "npi_is_valid",
]


MAX_UNKNOWN_FIELDS = 100  # beyond this many unknown keys an object is refused as a whole


class StrictModel(BaseModel):
    """Refuses unknown fields by name, ``NaN`` and infinities (not JSON), and is immutable once validated.

    Every field also refuses what no store or message can hold: NUL characters in text, and times
    that leave years 1-9999 once converted to UTC (``9999-12-31T23:59-23:59``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _few_unknown_fields(cls, data: Any) -> Any:
        """More than :data:`MAX_UNKNOWN_FIELDS` unknown keys in one object are refused as one error
        (with a count and the first names) before pydantic builds one error per key: 70,000 unknown
        keys would cost half a second and a 4 MB error list."""
        if isinstance(data, dict) and len(data) > len(cls.model_fields) + MAX_UNKNOWN_FIELDS:
            unknown = [key for key in data if key not in cls.model_fields]
            if len(unknown) > MAX_UNKNOWN_FIELDS:
                sample = ", ".join(repr(str(key)[:32]) for key in unknown[:5])
                raise ValueError(f"{len(unknown)} unknown fields ({sample}, ...); at most "
                                 f"{MAX_UNKNOWN_FIELDS} are named one by one")
        return data

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        for item in value if isinstance(value, list | tuple) else (value,):
            if isinstance(item, str) and "\x00" in item:
                raise ValueError("must not contain NUL characters")
            if isinstance(item, datetime) and item.tzinfo is not None:
                try:
                    item.astimezone(UTC)
                except OverflowError:
                    raise ValueError(f"is out of range once converted to UTC; send {DATETIME_FORM}") from None
        return value




class OrderStatus(StrEnum):
    """Lifecycle states of a CGT order, in stage order; the last three are terminal side states."""

    placed = "placed"
    confirmed = "confirmed"
    apheresis_scheduled = "apheresis_scheduled"
    collected = "collected"
    manufacturing = "manufacturing"
    manufactured = "manufactured"
    released = "released"
    shipped = "shipped"
    received = "received"
    infusion_scheduled = "infusion_scheduled"
    infused = "infused"
    on_hold = "on_hold"
    cancelled = "cancelled"
    failed = "failed"


class EventType(StrEnum):
    order_placed = "order.placed"  # internal: the creation of the order itself
    order_confirmed = "order.confirmed"
    apheresis_scheduled = "apheresis.scheduled"
    apheresis_rescheduled = "apheresis.rescheduled"
    collection_completed = "collection.completed"
    custody_transferred = "custody.transferred"
    manufacturing_started = "manufacturing.started"
    manufacturing_completed = "manufacturing.completed"
    release_passed = "release.passed"
    release_failed = "release.failed"
    shipment_dispatched = "shipment.dispatched"
    shipment_received = "shipment.received"
    infusion_scheduled = "infusion.scheduled"
    product_infused = "product.infused"
    order_on_hold = "order.on_hold"
    order_resumed = "order.resumed"
    order_cancelled = "order.cancelled"


MANUFACTURER_EVENT_TYPES: tuple[EventType, ...] = tuple(
    t for t in EventType if t is not EventType.order_placed)


class MeasurementCode(StrEnum):
    """Our measurement / release-result vocabulary (mapped to LOINC + UCUM in ``terminology``)."""

    tnc_count = "tnc_count"
    cd3_count = "cd3_count"
    cd34_count = "cd34_count"
    viability_pct = "viability_pct"
    viable_cd3_pct = "viable_cd3_pct"
    car_positive_pct = "car_positive_pct"
    volume_ml = "volume_ml"
    vcn = "vcn"
    sterility = "sterility"
    endotoxin_eu_ml = "endotoxin_eu_ml"
    mycoplasma = "mycoplasma"


# --------------------------------------------------------------------------- orders

_NPI = re.compile(r"^\d{10}$")


def npi_is_valid(npi: str) -> bool:
    """NPI check digit: Luhn over the prefix 80840 + the first nine digits."""
    if not _NPI.match(npi):
        return False
    digits = [int(c) for c in "80840" + npi[:9]]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10 == int(npi[9])


NonEmpty = Annotated[str, Field(min_length=1, max_length=200)]
Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")]


class Patient(StrictModel):
    mrn: Annotated[str, Field(min_length=1, max_length=64)]
    family: NonEmpty
    given: Annotated[list[NonEmpty], Field(min_length=1, max_length=5)]
    birth_date: Day
    sex: Literal["male", "female", "other", "unknown"]


class Provider(StrictModel):
    npi: str
    family: NonEmpty
    given: Annotated[list[NonEmpty], Field(min_length=1, max_length=5)]

    @field_validator("npi")
    @classmethod
    def _check_npi(cls, value: str) -> str:
        if not npi_is_valid(value):
            raise ValueError("must be a 10-digit NPI with a valid check digit")
        return value


class Requested(StrictModel):
    apheresis_date: Day | None = None
    infusion_date: Day | None = None

    @field_validator("infusion_date")
    @classmethod
    def _not_before_apheresis(cls, value: date | None, info: ValidationInfo) -> date | None:
        apheresis = info.data.get("apheresis_date")
        if value is not None and apheresis is not None and value < apheresis:
            raise ValueError("must not be before apheresis_date (the cells are collected first)")
        return value


class OrderIn(StrictModel):
    """Body of ``POST /v1/orders``."""

    order_id: Identifier
    coi: Annotated[str, Field(min_length=1, max_length=64)]
    product_code: Identifier
    site_id: Identifier
    patient: Patient
    ordering_provider: Provider
    requested: Requested = Requested()
    priority: Literal["routine", "urgent"]
    note: Annotated[str, Field(max_length=2000)] | None = None


# --------------------------------------------------------------------------- events


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


class ApheresisScheduledData(StrictModel):
    start: Instant
    end: Instant | None = None
    location: Text | None = None


class ApheresisRescheduledData(StrictModel):
    start: Instant
    end: Instant | None = None
    reason: Text | None = None


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

    def typed_data(self) -> StrictModel:
        return EVENT_DATA_MODELS[self.type].model_validate(self.data)


# --------------------------------------------------------------------------- snapshot for translation


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
    ``coi`` is the CoI in its stored normal form.
    """

    order: OrderIn
    coi: str
    manufacturer: ManufacturerRef
    product: ProductRef
    site: SiteRef
    status: OrderStatus
    created_at: datetime
    events: tuple[EventRecord, ...]
