"""What a site request asks of the order's lifecycle: the values it carries, checked, and the lifecycle
event that applies it (``source: site``), or None for a request that changes no lifecycle state.

=================  ===========================================================================
kind               lifecycle event (``occurred_at`` = now, except ``infused``)
=================  ===========================================================================
cancel             ``order.cancelled {reason}``
hold               ``order.on_hold {reason}``
release_hold       ``order.resumed``
reschedule/change  the apheresis appointment: ``apheresis.scheduled {start, end}`` while the
                   order's stage is before apheresis_scheduled, else ``apheresis.rescheduled
                   {start, end, reason}``; the infusion appointment: ``infusion.scheduled {start}``.
                   Without ``appointment``: apheresis before the order is collected, infusion after.
                   An appointment cancelled (SIU^S15, ``appointment_action: cancelled``): none.
infused            ``product.infused {infused_at}``, occurred at ``administered_at``
order_number       none (the site's order number is stored with the order)
=================  ===========================================================================

Times are checked for plausibility as manufacturer events are (:mod:`mappings.plausible_times`,
settings ``max_future_skew_s``, ``max_plan_ahead_days``, ``min_event_year``), with the pointer of the
requested value (``/requested/start``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.config import Settings
from gateway.intake.lifecycle import STAGES, LifecycleState
from gateway.intake.plausibility import time_limits
from mappings.domain import EventType, OrderStatus, StrictModel
from mappings.events import EVENT_DATA_MODELS, EventIn
from mappings.plausible_times import implausible_times
from mappings.site_request import SiteRequestKind
from mappings.strict_types import Instant

__all__ = ["RequestedValues", "PlannedEvent", "InvalidRequest", "requested_values", "planned_event",
           "check_times", "REASON_MAX_CHARS"]

REASON_MAX_CHARS = 1000
_RANK = {stage: rank for rank, stage in enumerate(STAGES)}
_Id = Annotated[str, Field(min_length=1, max_length=64)]

_DEFAULT_REASON: dict[SiteRequestKind, str] = {
    "cancel": "cancelled at the treatment site's request",
    "hold": "put on hold at the treatment site's request",
}


class RequestedValues(BaseModel):
    """The values a request asks for (see :class:`mappings.site_request.SiteRequestView`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    appointment: Literal["apheresis", "infusion"] | None = None
    start: Instant | None = None
    end: Instant | None = None
    appointment_action: Literal["booked", "rescheduled", "modified", "cancelled"] | None = None
    placer_appointment_id: _Id | None = None
    filler_appointment_id: _Id | None = None
    site_order_number: _Id | None = None
    administered_at: Instant | None = None

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class InvalidRequest(Exception):
    """A request whose values cannot be taken (refusal ``invalid-request``): ``pointer`` names the value."""

    def __init__(self, pointer: str, detail: str) -> None:
        super().__init__(detail)
        self.pointer = pointer
        self.detail = detail


@dataclass(frozen=True)
class PlannedEvent:
    type: EventType
    occurred_at: datetime
    typed: StrictModel
    data: dict[str, Any]


def requested_values(kind: SiteRequestKind, requested: dict[str, Any]) -> RequestedValues:
    """``requested`` validated for ``kind``; raises :class:`InvalidRequest` naming the value."""
    try:
        values = RequestedValues.model_validate(requested)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = "/".join(str(part) for part in error.get("loc", ()))
        extra = error.get("type") == "extra_forbidden"
        reason = "not a value a site request takes" if extra else error["msg"]
        raise InvalidRequest(f"/requested/{where}", f"requested {where}: {reason}") from None
    if kind == "order_number" and values.site_order_number is None:
        raise InvalidRequest("/requested/site_order_number", "the site's order number is missing")
    if kind in ("reschedule", "change") and values.appointment_action != "cancelled" and values.start is None:
        raise InvalidRequest("/requested/start", "the new start of the appointment is missing")
    if kind == "infused" and values.administered_at is None:
        raise InvalidRequest("/requested/administered_at", "the time of the infusion is missing")
    if values.start is not None and values.end is not None and values.end < values.start:
        raise InvalidRequest("/requested/end", f"must not be before start ({values.start.isoformat()})")
    return values


def _reason(kind: SiteRequestKind, reason: str | None) -> str:
    text = (reason or "").strip()
    return text[:REASON_MAX_CHARS] if text else _DEFAULT_REASON[kind]


def planned_event(kind: SiteRequestKind, values: RequestedValues, reason: str | None, state: LifecycleState,
                  now: datetime) -> PlannedEvent | None:
    """The lifecycle event applying the request to an order in ``state`` at ``now`` (None: no event)."""
    event_type: EventType
    occurred_at = now
    data: dict[str, Any]
    if kind == "cancel":
        event_type, data = EventType.order_cancelled, {"reason": _reason(kind, reason)}
    elif kind == "hold":
        event_type, data = EventType.order_on_hold, {"reason": _reason(kind, reason)}
    elif kind == "release_hold":
        event_type, data = EventType.order_resumed, {}
    elif kind == "infused":
        assert values.administered_at is not None
        occurred_at = values.administered_at
        event_type, data = EventType.product_infused, {"infused_at": values.administered_at}
    elif kind in ("reschedule", "change"):
        if values.appointment_action == "cancelled":
            return None
        assert values.start is not None
        appointment = values.appointment
        if appointment is None:
            appointment = "apheresis" if _RANK[state.stage] < _RANK[OrderStatus.collected] else "infusion"
        if appointment == "infusion":
            event_type, data = EventType.infusion_scheduled, {"start": values.start}
        elif _RANK[state.stage] < _RANK[OrderStatus.apheresis_scheduled]:
            event_type, data = EventType.apheresis_scheduled, {"start": values.start, "end": values.end}
        else:
            text = (reason or "").strip()[:REASON_MAX_CHARS] or None
            event_type = EventType.apheresis_rescheduled
            data = {"start": values.start, "end": values.end, "reason": text}
    else:  # order_number
        return None
    typed = EVENT_DATA_MODELS[event_type].model_validate({k: v for k, v in data.items() if v is not None})
    return PlannedEvent(event_type, occurred_at, typed, typed.model_dump(mode="json", exclude_none=True))


_POINTERS = {"/occurred_at": "/requested/administered_at", "/data/start": "/requested/start",
             "/data/end": "/requested/end", "/data/infused_at": "/requested/administered_at"}


def check_times(settings: Settings, planned: PlannedEvent, now: datetime) -> None:
    """Raise :class:`InvalidRequest` for the first implausible requested time of ``planned``."""
    probe = EventIn.model_construct(occurred_at=planned.occurred_at)
    for problem in implausible_times(probe, now, time_limits(settings), planned.typed):
        pointer = _POINTERS.get(problem.pointer, problem.pointer)
        raise InvalidRequest(pointer, f"{pointer.rsplit('/', 1)[-1]} {problem.reason}")
