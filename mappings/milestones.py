"""Milestone conditions (issue 16): given an order's events, its product's milestones and a time, the
set of alert conditions that hold.  Pure: no clock (``now`` is an argument), no I/O.

A :class:`Condition` is ``(kind, key, detail)``; ``key`` names the one thing the condition is about
(the dispatch event, the temperature reading, the expiry date), so the service can keep exactly one
alert per ``(order, kind, key)`` and resolve it once the condition no longer holds.

Rules (``docs/alerts.md``):

* ``shipment-overdue`` ``shipment:<dispatch event id>``: a ``shipment.dispatched`` not followed by a
  ``shipment.received`` within ``transit_hours_max`` of its ``occurred_at``;
  ``apheresis:<collection event id>``: collected material not received at manufacturing within
  ``apheresis_to_receipt_hours_max`` of ``collected_at``.  Received at manufacturing: a later
  ``custody.transferred`` whose ``to_party`` names a manufacturing party (contains "manufactur", any
  case), or ``manufacturing.started``.
* ``temperature-excursion`` ``temperature:<event id>``: a ``custody.transferred`` or
  ``shipment.received`` whose ``temperature_c`` is outside the range of the material's phase: the
  collected material until ``manufacturing.completed`` (by event order), the final product after it.
* ``expiry-approaching`` ``expiry:<expires_at>``: the latest ``manufacturing.completed`` ``expires_at``
  is within ``expiry_warning_days`` of ``now`` and no ``infusion.scheduled`` (nor infusion) follows it.
* ``release-failed`` ``release:<event id>``: every ``release.failed`` (with its disposition) until a later
  ``release.passed``.
* An order that is ``infused`` or ``cancelled`` holds no condition (its open alerts resolve).

:func:`certification_conditions` is the same for one site certification: ``certification-expiring``
``valid_until:<date>`` from ``CERTIFICATION_WARNING_DAYS`` days before ``valid_until``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

from pydantic import Field, model_validator

from mappings.domain import EventType, StrictModel
from mappings.events import EventRecord

__all__ = [
    "ALERT_KINDS",
    "CERTIFICATION_WARNING_DAYS",
    "AlertKind",
    "TemperatureRange",
    "MaterialTemperatures",
    "Milestones",
    "Condition",
    "order_conditions",
    "certification_conditions",
    "temperature_conditions",
]

AlertKind = Literal[
    "shipment-overdue",
    "temperature-excursion",
    "expiry-approaching",
    "release-failed",
    "certification-expiring",
]
ALERT_KINDS: tuple[str, ...] = (
    "shipment-overdue",
    "temperature-excursion",
    "expiry-approaching",
    "release-failed",
    "certification-expiring",
)
CERTIFICATION_WARNING_DAYS = 30
_FINISHED = frozenset({"infused", "cancelled"})


class TemperatureRange(StrictModel):
    """An inclusive range in degrees Celsius."""

    min: float = Field(ge=-273.15, le=100)
    max: float = Field(ge=-273.15, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> TemperatureRange:
        if self.min > self.max:
            raise ValueError("min must not be above max")
        return self

    def holds(self, value: float) -> bool:
        return self.min <= value <= self.max


class MaterialTemperatures(StrictModel):
    collected_material: TemperatureRange | None = None
    final_product: TemperatureRange | None = None


class Milestones(StrictModel):
    """A product's milestones (``ProductConfig.milestones``); an absent value switches its rule off."""

    transit_hours_max: float | None = Field(default=None, gt=0, le=24 * 365)
    temperature_c: MaterialTemperatures = Field(default_factory=MaterialTemperatures)
    apheresis_to_receipt_hours_max: float | None = Field(default=None, gt=0, le=24 * 365)
    expiry_warning_days: int | None = Field(default=None, ge=0, le=3650)


@dataclass(frozen=True)
class Condition:
    kind: str
    key: str
    detail: dict[str, Any] = field(default_factory=dict, compare=False)


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _manufacturing_receipt(record: EventRecord) -> bool:
    if record.type == EventType.manufacturing_started:
        return True
    if record.type == EventType.custody_transferred:
        return "manufactur" in str(record.data.get("to_party", "")).lower()
    return False


def temperature_conditions(events: Sequence[EventRecord], milestones: Milestones) -> list[Condition]:
    """The temperature excursions among ``events`` (in sequence order); needs no clock."""
    found: list[Condition] = []
    final = False
    for record in events:
        if record.type == EventType.manufacturing_completed:
            final = True
            continue
        if record.type not in (EventType.custody_transferred, EventType.shipment_received):
            continue
        value = record.data.get("temperature_c")
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        phase = "final_product" if final else "collected_material"
        allowed: TemperatureRange | None = getattr(milestones.temperature_c, phase)
        if allowed is None or allowed.holds(float(value)):
            continue
        found.append(
            Condition(
                "temperature-excursion",
                f"temperature:{record.event_id}",
                {
                    "event_id": record.event_id,
                    "event_type": record.type.value,
                    "phase": phase,
                    "temperature_c": value,
                    "min_c": allowed.min,
                    "max_c": allowed.max,
                    "at": _iso(record.occurred_at),
                },
            )
        )
    return found


def order_conditions(
    events: Sequence[EventRecord], status: str, milestones: Milestones | None, now: datetime
) -> list[Condition]:
    """Every condition that holds for an order (its non-retracted ``events`` in sequence order, its
    lifecycle ``status``) at ``now``."""
    if milestones is None or status in _FINISHED:
        return []
    events = sorted(events, key=lambda e: e.sequence)
    found: list[Condition] = []
    found.extend(_overdue(events, milestones, now))
    found.extend(temperature_conditions(events, milestones))
    found.extend(_expiry(events, milestones, now))
    found.extend(_release_failed(events))
    return found


def _overdue(events: Sequence[EventRecord], milestones: Milestones, now: datetime) -> list[Condition]:
    found: list[Condition] = []
    if milestones.transit_hours_max is not None:
        limit = timedelta(hours=milestones.transit_hours_max)
        for i, record in enumerate(events):
            if record.type != EventType.shipment_dispatched:
                continue
            if any(later.type == EventType.shipment_received for later in events[i + 1 :]):
                continue
            due = record.occurred_at + limit
            if now > due:
                found.append(
                    Condition(
                        "shipment-overdue",
                        f"shipment:{record.event_id}",
                        {
                            "leg": "shipment",
                            "event_id": record.event_id,
                            "dispatched_at": _iso(record.occurred_at),
                            "due_at": _iso(due),
                            "transit_hours_max": milestones.transit_hours_max,
                        },
                    )
                )
    if milestones.apheresis_to_receipt_hours_max is not None:
        limit = timedelta(hours=milestones.apheresis_to_receipt_hours_max)
        for i, record in enumerate(events):
            if record.type != EventType.collection_completed:
                continue
            if any(_manufacturing_receipt(later) for later in events[i + 1 :]):
                continue
            collected = record.data.get("collected_at")
            start = datetime.fromisoformat(collected) if isinstance(collected, str) else record.occurred_at
            due = start + limit
            if now > due:
                found.append(
                    Condition(
                        "shipment-overdue",
                        f"apheresis:{record.event_id}",
                        {
                            "leg": "collected-material",
                            "event_id": record.event_id,
                            "collected_at": _iso(start),
                            "due_at": _iso(due),
                            "apheresis_to_receipt_hours_max": milestones.apheresis_to_receipt_hours_max,
                        },
                    )
                )
    return found


def _expiry(events: Sequence[EventRecord], milestones: Milestones, now: datetime) -> list[Condition]:
    if milestones.expiry_warning_days is None:
        return []
    made = [i for i, e in enumerate(events) if e.type == EventType.manufacturing_completed]
    if not made:
        return []
    last = made[-1]
    raw = events[last].data.get("expires_at")
    if not isinstance(raw, str):
        return []
    expires_at = datetime.fromisoformat(raw)
    scheduled = (EventType.infusion_scheduled, EventType.product_infused)
    if any(later.type in scheduled for later in events[last + 1 :]):
        return []
    if now < expires_at - timedelta(days=milestones.expiry_warning_days):
        return []
    return [
        Condition(
            "expiry-approaching",
            f"expiry:{_iso(expires_at)}",
            {
                "event_id": events[last].event_id,
                "expires_at": _iso(expires_at),
                "expiry_warning_days": milestones.expiry_warning_days,
            },
        )
    ]


def _release_failed(events: Sequence[EventRecord]) -> list[Condition]:
    found: list[Condition] = []
    for i, record in enumerate(events):
        if record.type != EventType.release_failed:
            continue
        if any(later.type == EventType.release_passed for later in events[i + 1 :]):
            continue
        found.append(
            Condition(
                "release-failed",
                f"release:{record.event_id}",
                {
                    "event_id": record.event_id,
                    "disposition": record.data.get("disposition"),
                    "reason": record.data.get("reason"),
                    "at": _iso(record.occurred_at),
                },
            )
        )
    return found


def certification_conditions(status: str, valid_until: date, today: date) -> list[Condition]:
    """``certification-expiring`` while a certified site's ``valid_until`` is at most 30 days away
    (also once passed: the certification lapsed and still needs renewing)."""
    if status != "certified" or today < valid_until - timedelta(days=CERTIFICATION_WARNING_DAYS):
        return []
    return [
        Condition(
            "certification-expiring",
            f"valid_until:{valid_until.isoformat()}",
            {"valid_until": valid_until.isoformat(), "warning_days": CERTIFICATION_WARNING_DAYS},
        )
    ]
