"""The order lifecycle: a pure state machine deciding what each manufacturer event does to an order.

``decide(state, event_type, occurred_at, data)`` returns a :class:`Decision` (the new state and
whether the event is *late*) or raises :class:`gateway.errors.LifecycleError` with a stable code.
No I/O, no clock: the caller stores ``Decision.state`` (JSON via ``model_dump(mode="json")``) in
the same transaction as the event.  The rules are listed in :data:`RULES`; the transition table in
``docs/lifecycle.md`` is generated from this code (``python -m gateway.lifecycle > docs/lifecycle.md``)
and a test fails when the two disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict, model_validator

from gateway.errors import FieldError, LifecycleError
from mappings.domain import (
    EVENT_DATA_MODELS,
    EventType,
    InfusionScheduledData,
    ManufacturingCompletedData,
    OrderStatus,
    ReleaseFailedData,
    StrictModel,
)

__all__ = [
    "STAGES",
    "TERMINAL_STATUSES",
    "EVENT_STAGE",
    "RULES",
    "LifecycleState",
    "Decision",
    "initial_state",
    "decide",
    "has_material",
    "TransitionRow",
    "state_label",
    "probe_events",
    "probe_states",
    "outcome_label",
    "transition_grid",
    "transition_table",
    "render_markdown",
]

S = OrderStatus
E = EventType

STAGES: tuple[OrderStatus, ...] = (
    S.placed, S.confirmed, S.apheresis_scheduled, S.collected, S.manufacturing, S.manufactured,
    S.released, S.shipped, S.received, S.infusion_scheduled, S.infused,
)
_RANK = {stage: rank for rank, stage in enumerate(STAGES)}
TERMINAL_STATUSES = frozenset({S.infused, S.cancelled, S.failed})
_REMANUFACTURE_FROM = frozenset({S.manufactured, S.released})

# The stage each stage event reports.  release.failed sits at `released`; its disposition decides.
EVENT_STAGE: dict[EventType, OrderStatus] = {
    E.order_confirmed: S.confirmed,
    E.apheresis_scheduled: S.apheresis_scheduled,
    E.apheresis_rescheduled: S.apheresis_scheduled,
    E.collection_completed: S.collected,
    E.manufacturing_started: S.manufacturing,
    E.manufacturing_completed: S.manufactured,
    E.release_passed: S.released,
    E.release_failed: S.released,
    E.shipment_dispatched: S.shipped,
    E.shipment_received: S.received,
    E.infusion_scheduled: S.infusion_scheduled,
    E.product_infused: S.infused,
}

RULES: tuple[str, ...] = (
    "Stages, in order: " + " < ".join(STAGES) + ". Side states: on_hold, cancelled, failed. "
    "Terminal: infused, cancelled, failed.",
    "*Stage time*: the `occurred_at` of the event that established the current stage "
    "(the order's placement time at first).",
    "A forward move may skip stages. A stage event behind the current stage is *late* "
    "(accepted and recorded; status and stage unchanged) if its `occurred_at` is not after the stage time, "
    "otherwise it is refused `out-of-order` (409). An event of the current stage is an update if it "
    "occurred at or after the stage time (e.g. `apheresis.rescheduled`), otherwise it is late.",
    "`release.failed` with `remanufacture` moves the order back to manufacturing: allowed only from "
    "manufactured or released (else `invalid-transition`) and only if it occurred at or after the stage "
    "time (else `out-of-order`). The shelf life is then forgotten, and any later forward event that "
    "occurred before the remanufacture decision (including another release decision) is refused "
    "`out-of-order`: it belongs to the failed run.",
    "`release.failed` with `exception_release` moves to released; with `not_releasable` the order fails.",
    "Terminal states accept no stage events, holds, resumes or cancellations (`terminal-state`, 409), "
    "late or not.",
    "On hold: `order.resumed` returns to the stage held, `order.cancelled` cancels, custody transfers and "
    "late events are accepted; every other stage event, including a same-stage update, is refused "
    "`order-on-hold` (409). A second hold is refused `order-on-hold`; a resume when not on hold is "
    "refused `not-on-hold`.",
    "`custody.transferred` never moves the state. Before the order reaches collected there are no cells: "
    "refused `no-material` (409). Once cells exist it is accepted in every state, terminal ones included, "
    "because a custody record must never be refused while cells exist.",
    "`manufacturing.completed` remembers `data.expires_at` (a late one fills it only when no expiry is "
    "known for the current manufacturing run). `infusion.scheduled` with `data.start` after it is "
    "refused `beyond-shelf-life` (422). Without a known expiry the check cannot apply.",
    "`order.placed` only creates an order: `decide` refuses it `invalid-transition`.",
)


class LifecycleState(BaseModel):
    """What the lifecycle remembers about one order; stored as JSON beside the order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: OrderStatus
    stage: OrderStatus  # the last stage reached; differs from status only while on hold/cancelled/failed
    stage_occurred_at: AwareDatetime
    expires_at: AwareDatetime | None = None  # of the current manufacturing run
    remanufactured_at: AwareDatetime | None = None  # occurred_at of the last remanufacture decision

    @model_validator(mode="after")
    def _consistent(self) -> LifecycleState:
        if self.stage not in _RANK:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}")
        if self.status in _RANK and self.status is not self.stage:
            raise ValueError("stage must equal status unless the order is on hold, cancelled or failed")
        if self.status not in _RANK and self.stage is S.infused:
            raise ValueError("an infused order cannot be on hold, cancelled or failed")
        return self


@dataclass(frozen=True)
class Decision:
    state: LifecycleState
    late: bool


def initial_state(placed_at: datetime) -> LifecycleState:
    return LifecycleState(status=S.placed, stage=S.placed, stage_occurred_at=placed_at)


def has_material(state: LifecycleState) -> bool:
    """Cells exist once the order has reached collected (on the main line or before a side state)."""
    return _RANK[state.stage] >= _RANK[S.collected]


def _refuse(code: str, detail: str, pointer: str, reason: str, status: int | None = None) -> LifecycleError:
    return LifecycleError(detail, code=code, status=status, errors=[FieldError(pointer, reason)])


def _at(value: datetime) -> str:
    return value.isoformat()


def decide(
    state: LifecycleState, event_type: EventType, occurred_at: datetime, data: StrictModel
) -> Decision:
    """What ``event_type`` does to an order in ``state``; raises :class:`LifecycleError` if refused."""
    model = EVENT_DATA_MODELS[event_type]
    if not isinstance(data, model):
        raise TypeError(f"data for {event_type} must be {model.__name__}, got {type(data).__name__}")
    if occurred_at.tzinfo is None:
        raise ValueError("occurred_at must be timezone-aware")
    if event_type is E.order_placed:
        raise _refuse("invalid-transition", "order.placed creates an order; it cannot be applied to one",
                      "/type", "order.placed is not an event on an existing order")
    if event_type is E.custody_transferred:
        if not has_material(state):
            raise _refuse("no-material", f"custody.transferred before any collection: the order is at "
                          f"'{state.stage}', so there are no cells to hand over", "/type",
                          "no cells have been collected for this order yet")
        return Decision(state, late=False)
    if state.status in TERMINAL_STATUSES:
        raise _refuse("terminal-state", f"the order is {state.status} and accepts no further {event_type} "
                      "events", "/type", f"not accepted once the order is {state.status}")
    if event_type is E.order_on_hold:
        if state.status is S.on_hold:
            raise _refuse("order-on-hold", "the order is already on hold", "/type", "already on hold")
        return Decision(state.model_copy(update={"status": S.on_hold}), late=False)
    if event_type is E.order_resumed:
        if state.status is not S.on_hold:
            raise _refuse("not-on-hold", f"the order is {state.status}, not on hold; nothing to resume",
                          "/type", "the order is not on hold")
        return Decision(state.model_copy(update={"status": state.stage}), late=False)
    if event_type is E.order_cancelled:
        return Decision(state.model_copy(update={"status": S.cancelled}), late=False)
    return _stage_event(state, event_type, occurred_at, data)


def _stage_event(state: LifecycleState, event_type: EventType, occurred_at: datetime,
                 data: StrictModel) -> Decision:
    target = EVENT_STAGE[event_type]
    rank, current = _RANK[target], _RANK[state.stage]
    stage_at = state.stage_occurred_at
    if rank < current or (rank == current and occurred_at < stage_at):
        if occurred_at > stage_at:
            raise _refuse(
                "out-of-order",
                f"{event_type} reports stage '{target}', behind the order's stage '{state.stage}' reached at "
                f"{_at(stage_at)}; it occurred after that ({_at(occurred_at)}), so it is neither late "
                "nor next",
                "/occurred_at", f"must not be after {_at(stage_at)} for a late {event_type} event")
        _check_shelf_life(state, data)
        return Decision(_late_update(state, occurred_at, data), late=True)
    if state.status is S.on_hold:
        raise _refuse("order-on-hold", f"the order is on hold at '{state.stage}'; {event_type} is refused "
                      "until order.resumed", "/type", "refused while the order is on hold")
    if (event_type is E.release_failed and isinstance(data, ReleaseFailedData)
            and data.disposition == "remanufacture" and state.stage not in _REMANUFACTURE_FROM):
        return _remanufacture(state, occurred_at)  # refused invalid-transition, whatever its time
    if rank > current and state.remanufactured_at is not None and occurred_at < state.remanufactured_at:
        raise _refuse(
            "out-of-order",
            f"{event_type} occurred at {_at(occurred_at)}, before the remanufacture decided at "
            f"{_at(state.remanufactured_at)}; it belongs to the failed manufacturing run",
            "/occurred_at", f"must not be before {_at(state.remanufactured_at)}")
    if event_type is E.release_failed:
        assert isinstance(data, ReleaseFailedData)
        if data.disposition == "remanufacture":
            return _remanufacture(state, occurred_at)
        if data.disposition == "not_releasable":
            return Decision(state.model_copy(update={"status": S.failed}), late=False)
    _check_shelf_life(state, data)
    update: dict[str, object] = {"status": target, "stage": target, "stage_occurred_at": occurred_at}
    if isinstance(data, ManufacturingCompletedData):
        update["expires_at"] = data.expires_at
    return Decision(state.model_copy(update=update), late=False)


def _remanufacture(state: LifecycleState, occurred_at: datetime) -> Decision:
    if state.stage not in _REMANUFACTURE_FROM:
        raise _refuse("invalid-transition", "release.failed with remanufacture needs a manufactured "
                      f"product; the order is at '{state.stage}'", "/data/disposition",
                      "remanufacture is allowed only from manufactured or released")
    if occurred_at < state.stage_occurred_at:
        raise _refuse("out-of-order", f"the remanufacture occurred at {_at(occurred_at)}, before the order "
                      f"reached '{state.stage}' at {_at(state.stage_occurred_at)}", "/occurred_at",
                      f"must not be before {_at(state.stage_occurred_at)}")
    reworked = LifecycleState(status=S.manufacturing, stage=S.manufacturing, stage_occurred_at=occurred_at,
                              remanufactured_at=occurred_at)
    return Decision(reworked, late=False)


def _late_update(state: LifecycleState, occurred_at: datetime, data: StrictModel) -> LifecycleState:
    """A late event never moves status or stage; a late manufacturing.completed may fill a missing expiry."""
    if (isinstance(data, ManufacturingCompletedData) and state.expires_at is None
            and (state.remanufactured_at is None or occurred_at >= state.remanufactured_at)):
        return state.model_copy(update={"expires_at": data.expires_at})
    return state


def _check_shelf_life(state: LifecycleState, data: StrictModel) -> None:
    if not isinstance(data, InfusionScheduledData) or state.expires_at is None:
        return
    if data.start > state.expires_at:
        raise _refuse("beyond-shelf-life", f"infusion scheduled for {_at(data.start)}, after the product "
                      f"expires at {_at(state.expires_at)}", "/data/start",
                      f"must not be after the product's expiry {_at(state.expires_at)}", status=422)


# --------------------------------------------------------------------------- the transition table
# Each cell is decide()'s own answer for a representative state of that status and stage, at stage
# time T0, with the event occurring just before, at, or just after T0.  Shelf life and the
# remanufacture cut-off do not show here (no expiry, no remanufacture in the probe states): see RULES.

_T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
_TIMINGS: tuple[tuple[str, timedelta], ...] = (
    ("before", timedelta(hours=-1)), ("at", timedelta(0)), ("after", timedelta(hours=1)),
)
_CONDITION = {
    ("before",): "<", ("at",): "=", ("after",): ">",
    ("before", "at"): "≤", ("at", "after"): "≥", ("before", "after"): "≠",
}
_PROBE_DATA: dict[EventType, dict[str, object]] = {
    E.apheresis_scheduled: {"start": _T0},
    E.apheresis_rescheduled: {"start": _T0},
    E.collection_completed: {"collected_at": _T0},
    E.custody_transferred: {"from_party": "probe", "to_party": "probe", "at": _T0},
    E.manufacturing_completed: {"lot": "probe", "expires_at": _T0 + timedelta(days=365)},
    E.shipment_received: {"received_at": _T0},
    E.infusion_scheduled: {"start": _T0},
    E.product_infused: {"infused_at": _T0},
    E.order_on_hold: {"reason": "probe"},
    E.order_cancelled: {"reason": "probe"},
}
_DISPOSITIONS = ("remanufacture", "exception_release", "not_releasable")


@dataclass(frozen=True)
class TransitionRow:
    event: str  # event type, with the disposition for release.failed
    from_states: tuple[str, ...]  # state labels as given by state_label()
    outcome: str


def state_label(state: LifecycleState) -> str:
    """``collected`` on the main line; ``on_hold from collected`` etc. for side states."""
    return str(state.status) if state.status in _RANK else f"{state.status} from {state.stage}"


def probe_events() -> list[tuple[str, EventType, StrictModel]]:
    """(label, event type, representative data) for every event decide() knows, one per disposition."""
    probes: list[tuple[str, EventType, StrictModel]] = []
    for event_type in EventType:
        model = EVENT_DATA_MODELS[event_type]
        if event_type is E.release_failed:
            probes += [
                (f"release.failed ({d})", event_type,
                 model.model_validate({"reason": "probe", "disposition": d}))
                for d in _DISPOSITIONS
            ]
        else:
            data = model.model_validate(_PROBE_DATA.get(event_type, {}))
            probes.append((str(event_type), event_type, data))
    return probes


def probe_states() -> list[LifecycleState]:
    """One representative state per reachable (status, stage) pair, stage time T0."""
    open_stages = STAGES[:-1]
    pairs = [(stage, stage) for stage in open_stages]
    pairs += [(S.on_hold, stage) for stage in open_stages]
    pairs += [(S.infused, S.infused)]
    pairs += [(S.cancelled, stage) for stage in open_stages]
    pairs += [(S.failed, stage) for stage in STAGES[: _RANK[S.released] + 1]]
    return [LifecycleState(status=status, stage=stage, stage_occurred_at=_T0) for status, stage in pairs]


def outcome_label(
    state: LifecycleState, event_type: EventType, occurred_at: datetime, data: StrictModel
) -> str:
    """decide()'s answer in words: ``→ X``, ``update, stays X``, ``late (recorded, no move)``, …"""
    try:
        decision = decide(state, event_type, occurred_at, data)
    except LifecycleError as exc:
        return f"refused `{exc.code}` ({exc.status})"
    if decision.late:
        return "late (recorded, no move)"
    if event_type is E.order_resumed and decision.state.status is state.stage:
        return "→ the stage it was held at"
    if decision.state.status is not state.status:
        return f"→ {decision.state.status}"
    if event_type is E.custody_transferred:
        return "accepted, state unchanged"
    return f"update, stays {state.status}"


def transition_grid() -> dict[tuple[str, str], dict[str, str]]:
    """(event label, state label) -> {"before"|"at"|"after": outcome label}, all computed by decide()."""
    return {
        (label, state_label(state)): {
            timing: outcome_label(state, event_type, _T0 + delta, data) for timing, delta in _TIMINGS
        }
        for label, event_type, data in probe_events()
        for state in probe_states()
    }


def _combined(by_timing: dict[str, str]) -> str:
    timings_of: dict[str, list[str]] = {}
    for timing, _ in _TIMINGS:
        timings_of.setdefault(by_timing[timing], []).append(timing)
    if len(timings_of) == 1:
        return next(iter(timings_of))
    return "; ".join(f"{outcome} if occurred_at {_CONDITION[tuple(timings)]} stage time"
                     for outcome, timings in timings_of.items())


def transition_table() -> list[TransitionRow]:
    """Rows (event, from-states, outcome), consecutive states with the same outcome merged."""
    grid = transition_grid()
    labels = [state_label(state) for state in probe_states()]
    rows: list[TransitionRow] = []
    for event_label, _, _ in probe_events():
        group: list[str] = []
        outcome = ""
        for label in labels:
            cell = _combined(grid[(event_label, label)])
            if group and cell != outcome:
                rows.append(TransitionRow(event_label, tuple(group), outcome))
                group = []
            group.append(label)
            outcome = cell
        rows.append(TransitionRow(event_label, tuple(group), outcome))
    return rows


def _compact(labels: tuple[str, ...]) -> str:
    runs: list[tuple[str, list[str]]] = []
    for label in labels:
        prefix, _, stage = label.rpartition(" from ")
        prefix = f"{prefix} from " if prefix else ""
        if runs and runs[-1][0] == prefix:
            runs[-1][1].append(stage)
        else:
            runs.append((prefix, [stage]))
    parts = [prefix + (f"{names[0]} … {names[-1]}" if len(names) > 2 else ", ".join(names))
             for prefix, names in runs]
    return "; ".join(parts)


def render_markdown() -> str:
    lines = [
        "# Order lifecycle",
        "",
        "<!-- Generated from gateway/lifecycle.py: python -m gateway.lifecycle > docs/lifecycle.md -->",
        "<!-- Do not edit by hand: tests/unit/test_lifecycle.py fails when it and the code disagree. -->",
        "",
        "The gateway decides every manufacturer event with one pure state machine,",
        "`gateway.lifecycle.decide`.",
        "Refusals are RFC 9457 problems with the stable code shown; nothing is stored for a refused event.",
        "",
        "## Rules",
        "",
        *[f"- {rule}" for rule in RULES],
        "",
        "## Transition table",
        "",
        "Computed by calling `decide` for every event on a representative order in every state, with the",
        "event occurring before, at and after the *stage time*. `on_hold from X` is an order held at",
        "stage X.",
        "",
        "| Event | From state | Outcome |",
        "|---|---|---|",
        *[f"| `{row.event}` | {_compact(row.from_states)} | {row.outcome} |" for row in transition_table()],
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_markdown(), end="")
