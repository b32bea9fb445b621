"""The gateway's side of plausible times: its clock and settings applied to the pure rule in
:mod:`mappings.plausible_times`; an implausible time is ``422 validation-failed`` naming the field."""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway.config import Settings
from gateway.errors import FieldError, ValidationFailed
from mappings.domain import StrictModel
from mappings.events import EventIn
from mappings.orders import OrderIn
from mappings.plausible_times import (
    ImplausibleTime,
    TimeLimits,
    implausible_order_times,
    implausible_times,
)

__all__ = ["time_limits", "check_event_times", "check_order_times"]


def time_limits(settings: Settings) -> TimeLimits:
    return TimeLimits(
        max_future_skew=timedelta(seconds=settings.max_future_skew_s),
        max_plan_ahead=timedelta(days=settings.max_plan_ahead_days),
        min_year=settings.min_event_year,
    )


def _refuse(what: str, problems: list[ImplausibleTime]) -> None:
    if problems:
        n = len(problems)
        raise ValidationFailed(
            f"The {what} has {n} implausible time{'s' if n != 1 else ''}; nothing was changed.",
            errors=[FieldError(p.pointer, p.reason, "implausible-time") for p in problems],
        )


def check_event_times(settings: Settings, event: EventIn, data: StrictModel, now: datetime) -> None:
    """Raise ``validation-failed`` if any time of ``event`` is implausible at ``now``."""
    _refuse("event", implausible_times(event, now, time_limits(settings), data))


def check_order_times(settings: Settings, order: OrderIn, now: datetime) -> None:
    """Raise ``validation-failed`` if a requested date of ``order`` is implausible at ``now``."""
    _refuse("order", implausible_order_times(order, now, time_limits(settings)))
