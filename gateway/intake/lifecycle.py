"""The order lifecycle: a pure state machine deciding what each manufacturer event does to an order.

``decide(state, event_type, occurred_at, data, autologous=...)`` returns a :class:`Decision` (the new
state and whether the event is *late*) or raises :class:`gateway.errors.LifecycleError` with a stable
code.  ``autologous`` (required, keyword-only) says whether the product is made from the patient's own
cells, which the material gate needs.
No I/O, no clock: the caller stores ``Decision.state`` (JSON via ``model_dump(mode="json")``) in
the same transaction as the event.  The rules are listed in :data:`RULES`; the transition table in
``docs/lifecycle.md`` is generated from this code by :mod:`gateway.intake.lifecycle_table`
(``python -m gateway.intake.lifecycle_table > docs/lifecycle.md``) and a test fails when the two disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, model_validator

from gateway.errors import FieldError, LifecycleError
from mappings.domain import EventType, OrderStatus, StrictModel
from mappings.events import (
    EVENT_DATA_MODELS,
    InfusionScheduledData,
    ManufacturingCompletedData,
    ReleaseFailedData,
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
    "has_release_decision",
    "NEEDS_MATERIAL",
    "NEEDS_RELEASE",
    "RELEASE_DECISIONS",
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

# The safety gates (see RULES): what each gated event needs before it may move the order.
NEEDS_MATERIAL = frozenset({E.manufacturing_started, E.manufacturing_completed})  # autologous products
NEEDS_RELEASE = frozenset({E.shipment_dispatched, E.shipment_received, E.infusion_scheduled,
                           E.product_infused})
RELEASE_DECISIONS = frozenset({E.release_passed, E.release_failed})  # release.failed: exception_release

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
    "`release.failed` with `exception_release` moves to released; with `not_releasable` the order fails "
    "(from any stage up to released: stopping an order is never gated).",
    "Terminal states accept no stage events, holds, resumes or cancellations (`terminal-state`, 409), "
    "late or not.",
    "On hold: `order.resumed` returns to the stage held, `order.cancelled` cancels, custody transfers and "
    "late events are accepted; every other stage event, including a same-stage update, is refused "
    "`order-on-hold` (409). A second hold is refused `order-on-hold`; a resume when not on hold is "
    "refused `not-on-hold`.",
    "*Safety gates*, checked for every stage event that is not late (after the hold, before the "
    "remanufacture cut-off): for an autologous product `manufacturing.started` and "
    "`manufacturing.completed` need collected material (the order has reached collected), else "
    "`no-material` (409); `shipment.dispatched`, `shipment.received`, `infusion.scheduled` and "
    "`product.infused` need a release decision of the current manufacturing run, else `not-released` "
    "(409); a release decision (`release.passed`, `release.failed` with `exception_release`) needs the "
    "current run to be complete (the order has reached manufactured, by `manufacturing.completed`), "
    "else `invalid-transition` (409). A release decision of the current run exists exactly when the "
    "order's stage is released or beyond: only a release decision reaches released, every stage beyond "
    "it is reached only through the gates, and a remanufacture moves the stage back to manufacturing. "
    "Late events are not gated: they never move the order. For an allogeneic product the material gate "
    "does not apply (the table below is for an autologous product).",
    "`custody.transferred` never moves the state. Before the order reaches collected there are no cells: "
    "refused `no-material` (409). Once cells exist it is accepted in every state, terminal ones included, "
    "because a custody record must never be refused while cells exist.",
    "`manufacturing.completed` remembers `data.expires_at` (a late one fills it only when no expiry is "
    "known for the current manufacturing run). `infusion.scheduled` with `data.start` after it is "
    "refused `beyond-shelf-life` (422). Without a known expiry the check cannot apply (since the safety "
    "gates every released order has one: a release needs `manufacturing.completed`).",
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


def has_release_decision(state: LifecycleState) -> bool:
    """A release decision of the current manufacturing run exists (the stage is released or beyond).

    Only ``release.passed`` or ``release.failed`` with ``exception_release`` reaches released, the
    stages beyond are gated on it, and a remanufacture moves the stage back to manufacturing.
    """
    return _RANK[state.stage] >= _RANK[S.released]


def _refuse(code: str, detail: str, pointer: str, reason: str, status: int | None = None) -> LifecycleError:
    return LifecycleError(detail, code=code, status=status, errors=[FieldError(pointer, reason)])


def _at(value: datetime) -> str:
    return value.isoformat()


def decide(
    state: LifecycleState, event_type: EventType, occurred_at: datetime, data: StrictModel, *,
    autologous: bool,
) -> Decision:
    """What ``event_type`` does to an order in ``state``; raises :class:`LifecycleError` if refused.

    ``autologous``: the product is made from the patient's own cells (the material gate applies).
    """
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
    return _stage_event(state, event_type, occurred_at, data, autologous)


def _stage_event(state: LifecycleState, event_type: EventType, occurred_at: datetime,
                 data: StrictModel, autologous: bool) -> Decision:
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
    _check_gates(state, event_type, data, autologous)
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


def _check_gates(state: LifecycleState, event_type: EventType, data: StrictModel, autologous: bool) -> None:
    """The safety gates of a stage event that would move (or update) the order; see RULES."""
    if autologous and event_type in NEEDS_MATERIAL and not has_material(state):
        raise _refuse("no-material", f"{event_type} for an autologous product before any collection: the "
                      f"order is at '{state.stage}', so there are no cells of this patient to manufacture "
                      "from", "/type",
                      "no cells have been collected for this order yet (collection.completed)")
    if event_type in NEEDS_RELEASE and not has_release_decision(state):
        raise _refuse("not-released", f"{event_type} before a release decision of the current manufacturing "
                      f"run: the order is at '{state.stage}'", "/type",
                      "the current manufacturing run has no release decision yet (release.passed, or "
                      "release.failed with exception_release)")
    if (event_type in RELEASE_DECISIONS and _RANK[state.stage] < _RANK[S.manufactured]
            and not (isinstance(data, ReleaseFailedData) and data.disposition == "not_releasable")):
        raise _refuse("invalid-transition", f"{event_type} is a release decision, but the current "
                      f"manufacturing run is not complete: the order is at '{state.stage}'", "/type",
                      "a release decision needs a completed manufacturing run (manufacturing.completed)")


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
