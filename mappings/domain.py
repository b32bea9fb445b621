"""The domain vocabulary shared by every layer: orders, events, and the order snapshot.

These are the plain data contracts that flow along the arrows of the architecture:
the API validates request bodies into :class:`OrderIn` / :class:`EventIn`, the lifecycle
decides, the store keeps :class:`EventRecord` rows, and ``mappings.translate`` receives an
:class:`OrderSnapshot` plus the :class:`EventRecord` being translated.  Nothing here does I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    field_validator,
    model_validator,
)

from mappings.strict_types import DATETIME_FORM

__all__ = [
    "MAX_UNKNOWN_FIELDS",
    "StrictModel",
    "OrderStatus",
    "EventType",
    "MANUFACTURER_EVENT_TYPES",
    "MeasurementCode",
    "TaskStatus",
    "RequestStatus",
]


#: FHIR R4 Task.status (required binding http://hl7.org/fhir/task-status): the one list of these codes.
TaskStatus = Literal[
    "draft", "requested", "received", "accepted", "rejected", "ready", "cancelled", "in-progress",
    "on-hold", "failed", "completed", "entered-in-error",
]
#: FHIR R4 ServiceRequest.status (required binding http://hl7.org/fhir/request-status).
RequestStatus = Literal["draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"]

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


# --------------------------------------------------------------------------- events


# --------------------------------------------------------------------------- snapshot for translation
