"""Plausible times: is a time in an order or event one the gateway may believe, given the clock now?

Pure: ``now`` and the :class:`TimeLimits` are arguments (the gateway reads its clock and settings).
Two kinds of event time, told apart by the field's name (every time field of every event model is
in exactly one of the two sets; a test keeps it so):

* a time at which something **happened** (:data:`HAPPENED_FIELDS`: ``occurred_at`` and, in
  ``data``, ``collected_at``, ``at``, ``received_at``, ``infused_at``) may be at most
  ``max_future_skew`` ahead of ``now`` (clocks drift; the future has not happened yet);
* a time that **plans** the future (:data:`PLANNED_FIELDS`: ``start``, ``end``, ``expected_at``,
  ``expires_at``) may lie ahead, but at most ``max_plan_ahead``.

Either kind before 1 January of ``min_year`` (UTC) is refused.  An order's requested dates
(``requested.apheresis_date``, ``requested.infusion_date``) plan the future: the same two bounds, by
calendar date.  The patient's birth date is not a planned or happened event time: it keeps its own
rule (not in the future), checked by the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from mappings.domain import StrictModel
from mappings.events import EventIn
from mappings.orders import OrderIn
from mappings.strict_types import DATE_EXAMPLE, DATETIME_EXAMPLE

__all__ = [
    "HAPPENED_FIELDS",
    "PLANNED_FIELDS",
    "TimeLimits",
    "ImplausibleTime",
    "implausible_times",
    "implausible_order_times",
]

HAPPENED_FIELDS: frozenset[str] = frozenset(
    {"occurred_at", "collected_at", "at", "received_at", "infused_at"}
)
PLANNED_FIELDS: frozenset[str] = frozenset({"start", "end", "expected_at", "expires_at"})


@dataclass(frozen=True)
class TimeLimits:
    """The bounds (settings ``max_future_skew_s``, ``max_plan_ahead_days``, ``min_event_year``)."""

    max_future_skew: timedelta = timedelta(seconds=300)
    max_plan_ahead: timedelta = timedelta(days=730)
    min_year: int = 2000


@dataclass(frozen=True)
class ImplausibleTime:
    """One refused time: the JSON pointer of its field and why (with an example of a good value)."""

    pointer: str
    reason: str


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _happened(pointer: str, value: datetime, now: datetime, limits: TimeLimits) -> ImplausibleTime | None:
    if value - now > limits.max_future_skew:
        return ImplausibleTime(
            pointer,
            f"is {_span(value - now)} ahead of the gateway's clock ({_iso(now)}); a time at which something "
            f"happened may be at most {_span(limits.max_future_skew)} ahead: send when it happened, "
            f"such as {DATETIME_EXAMPLE}",
        )
    return None


def _planned(pointer: str, value: datetime, now: datetime, limits: TimeLimits) -> ImplausibleTime | None:
    if value - now > limits.max_plan_ahead:
        return ImplausibleTime(
            pointer,
            f"is {_span(value - now)} ahead of the gateway's clock ({_iso(now)}); a planned time may be at "
            f"most {limits.max_plan_ahead.days} days ahead, such as {DATETIME_EXAMPLE}",
        )
    return None


def _too_early(pointer: str, value: datetime, limits: TimeLimits) -> ImplausibleTime | None:
    if value.astimezone(UTC).year < limits.min_year:
        return ImplausibleTime(
            pointer,
            f"is before the year {limits.min_year}, so it cannot be a time of "
            f"this order; send a time such as {DATETIME_EXAMPLE}",
        )
    return None


def _time_problem(
    pointer: str, name: str, value: datetime, now: datetime, limits: TimeLimits
) -> ImplausibleTime | None:
    early = _too_early(pointer, value, limits)
    if early is not None:
        return early
    check = _planned if name in PLANNED_FIELDS else _happened
    return check(pointer, value, now, limits)


def implausible_times(
    event: EventIn, now: datetime, limits: TimeLimits, data: StrictModel | None = None
) -> list[ImplausibleTime]:
    """Every implausible time of ``event`` at ``now`` (empty: all plausible), ``occurred_at`` first.

    ``data`` is the event's typed data if the caller validated it already (else it is validated here).
    A time field of ``data`` in neither set is judged by the stricter rule, as a time that happened
    (a test keeps every field classified).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    found = [_time_problem("/occurred_at", "occurred_at", event.occurred_at, now, limits)]
    typed = event.typed_data() if data is None else data
    for name in type(typed).model_fields:
        value = getattr(typed, name)
        if not isinstance(value, datetime):
            continue
        found.append(_time_problem(f"/data/{name}", name, value, now, limits))
    return [problem for problem in found if problem is not None]


def _date_problem(pointer: str, value: date, now: datetime, limits: TimeLimits) -> ImplausibleTime | None:
    latest = (now.astimezone(UTC) + limits.max_plan_ahead).date() + timedelta(days=1)  # a day for time zones
    form = f"a date in the form {DATE_EXAMPLE} from {limits.min_year}-01-01 to {latest}"
    if value.year < limits.min_year:
        return ImplausibleTime(pointer, f"is before the year {limits.min_year}; send {form}")
    if value > latest:
        return ImplausibleTime(
            pointer,
            f"is more than {limits.max_plan_ahead.days} days after today ({now.astimezone(UTC).date()}); "
            f"send {form}",
        )
    return None


def implausible_order_times(order: OrderIn, now: datetime, limits: TimeLimits) -> list[ImplausibleTime]:
    """Every implausible requested date of ``order`` at ``now`` (the birth date has its own rule)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    found = [
        _date_problem(f"/requested/{name}", value, now, limits)
        for name in ("apheresis_date", "infusion_date")
        if (value := getattr(order.requested, name)) is not None
    ]
    return [problem for problem in found if problem is not None]
