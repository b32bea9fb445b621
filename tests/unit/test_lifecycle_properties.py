"""Random event sequences against the lifecycle.

Two independent checks on every step of every sequence:

* decide() answers exactly what the documented transition table says for the order's state and the
  event's timing, except for the two rules the table cannot show (shelf life, the remanufacture
  cut-off), which are checked against their own conditions;
* an independent, hand-written list of allowed status moves, and invariants: a late event never
  moves, terminal states never change, the stage only goes backward by a remanufacture;
* the safety gates, against an independent record of the events accepted so far: no accepted
  sequence reaches shipped, received, infusion_scheduled or infused without a release decision of the
  current manufacturing run (one accepted, not late, after the run's manufacturing.completed and after
  the last remanufacture), and for an autologous product none reaches manufacturing without an
  accepted collection.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import LifecycleError
from gateway.intake.lifecycle import EVENT_STAGE, STAGES, Decision, LifecycleState, decide, initial_state
from gateway.intake.lifecycle_table import outcome_label, probe_events, state_label, transition_grid
from mappings.domain import EventType, OrderStatus, StrictModel
from mappings.events import InfusionScheduledData, ManufacturingCompletedData, ReleaseFailedData

E = EventType
S = OrderStatus
T0 = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
GRIDS = {autologous: transition_grid(autologous=autologous) for autologous in (True, False)}
PROBES = {label: (event_type, data) for label, event_type, data in probe_events()}
RANK = {stage: rank for rank, stage in enumerate(STAGES)}
MAIN_LINE = set(STAGES)
TERMINAL = {S.infused, S.cancelled, S.failed}


def allowed_move(old: LifecycleState, new: LifecycleState) -> bool:
    """The status moves the issue allows, written independently of gateway.intake.lifecycle."""
    a, b = old.status, new.status
    if a == b:
        return True
    if a in TERMINAL:
        return False
    if a in MAIN_LINE and b in MAIN_LINE and RANK[b] > RANK[a]:
        return True  # forward, skipping stages allowed
    if a in MAIN_LINE and b in (S.on_hold, S.cancelled):
        return True
    if a is S.on_hold:
        return b is S.cancelled or b is old.stage  # resume to the stage held
    if a in MAIN_LINE and b is S.failed:
        return RANK[a] <= RANK[S.released]  # not releasable
    return a in (S.manufactured, S.released) and b is S.manufacturing  # remanufacture


ENDING = {"product.infused", "order.cancelled", "release.failed (not_releasable)"}
_any_label = st.sampled_from(sorted(PROBES))
_open_label = st.sampled_from(sorted(set(PROBES) - ENDING))
step = st.tuples(
    st.one_of(_open_label, _open_label, _open_label, _any_label),  # end orders less often than uniform
    st.one_of(st.just(0), st.integers(min_value=-600, max_value=1440)),  # minutes from the stage time
    st.integers(min_value=-2, max_value=60),  # days from T0 for data.start / data.expires_at
)


def with_times(event_type: EventType, data: StrictModel, days: int) -> StrictModel:
    moment = T0 + timedelta(days=days)
    if event_type is E.infusion_scheduled:
        return data.model_copy(update={"start": moment})
    if event_type is E.manufacturing_completed:
        return data.model_copy(update={"expires_at": moment})
    return data


def expected_label(
    state: LifecycleState, label: str, event_type: EventType, occurred_at: datetime, data: StrictModel,
    autologous: bool,
) -> str:
    delta = occurred_at - state.stage_occurred_at
    timing = "before" if delta < timedelta(0) else "at" if delta == timedelta(0) else "after"
    documented = GRIDS[autologous][(label, state_label(state))][timing]
    if documented.startswith("refused"):
        return documented
    floor = state.remanufactured_at
    if event_type in EVENT_STAGE and documented.startswith("→") and floor is not None and occurred_at < floor:
        return "refused `out-of-order` (409)"
    if (
        isinstance(data, InfusionScheduledData)
        and state.expires_at is not None
        and data.start > state.expires_at
    ):
        return "refused `beyond-shelf-life` (422)"
    return documented


def check_invariants(
    old: LifecycleState, event_type: EventType, data: StrictModel, decision: Decision
) -> None:
    new = decision.state
    assert LifecycleState.model_validate(new.model_dump(mode="json")) == new  # consistent and JSON-safe
    assert allowed_move(old, new), (old, event_type, new)
    if old.status in TERMINAL:
        assert event_type is E.custody_transferred and new == old
    if event_type is E.custody_transferred:
        assert new == old and not decision.late
    if decision.late:
        assert (new.status, new.stage, new.stage_occurred_at) == (
            old.status,
            old.stage,
            old.stage_occurred_at,
        )
        if new != old:  # only a missing expiry may be filled in
            assert isinstance(data, ManufacturingCompletedData) and old.expires_at is None
            assert new == old.model_copy(update={"expires_at": data.expires_at})
    if RANK[new.stage] < RANK[old.stage]:
        assert isinstance(data, ReleaseFailedData) and data.disposition == "remanufacture"
        assert old.stage in (S.manufactured, S.released) and new.status is S.manufacturing
        assert new.expires_at is None and new.remanufactured_at == new.stage_occurred_at
    if new.status is S.on_hold and old.status is not S.on_hold:
        assert new.stage == old.stage


class GateWitness:
    """An independent record of the accepted events that the safety gates are about."""

    def __init__(self) -> None:
        self.collected = False
        self.run_complete = False  # manufacturing.completed accepted (not late) since the last remanufacture
        self.released = False  # a release decision accepted (not late) after that completion

    def accepted(self, event_type: EventType, data: StrictModel, decision: Decision) -> None:
        if decision.late:
            return
        disposition = data.disposition if isinstance(data, ReleaseFailedData) else None
        if event_type is E.collection_completed:
            self.collected = True
        elif event_type is E.manufacturing_completed:
            self.run_complete = True
        elif disposition == "remanufacture":
            self.run_complete = self.released = False
        elif event_type is E.release_passed or disposition == "exception_release":
            assert self.run_complete, "a release decision accepted without a completed manufacturing run"
            self.released = True

    def check(self, state: LifecycleState, autologous: bool) -> None:
        if state.stage in (S.shipped, S.received, S.infusion_scheduled, S.infused):
            assert self.released, f"{state.stage} reached without a release decision of the current run"
        if autologous and RANK[state.stage] >= RANK[S.manufacturing]:
            assert self.collected, f"{state.stage} reached without a collection of the patient's cells"


def walk(steps: list[tuple[str, int, int]], autologous: bool) -> list[OrderStatus]:
    """Apply ``steps``, checking every answer against the table, the invariants and the gates."""
    state = initial_state(T0)
    witness = GateWitness()
    seen: list[OrderStatus] = []
    for label, minutes, days in steps:
        event_type, probe = PROBES[label]
        data = with_times(event_type, probe, days)
        occurred_at = state.stage_occurred_at + timedelta(minutes=minutes)
        expected = expected_label(state, label, event_type, occurred_at, data, autologous)
        assert outcome_label(state, event_type, occurred_at, data, autologous=autologous) == expected, (
            state, label, occurred_at)
        try:
            decision = decide(state, event_type, occurred_at, data, autologous=autologous)
        except LifecycleError as exc:
            assert exc.errors and all(error.pointer.startswith("/") for error in exc.errors)
            assert exc.status == (422 if exc.code == "beyond-shelf-life" else 409)
            continue
        check_invariants(state, event_type, data, decision)
        witness.accepted(event_type, data, decision)
        witness.check(decision.state, autologous)
        seen.append(decision.state.status)
        state = decision.state
    return seen


@settings(max_examples=300, deadline=None)
@given(st.lists(step, min_size=1, max_size=40), st.booleans())
def test_random_sequences_follow_the_documented_table(steps: list[tuple[str, int, int]],
                                                      autologous: bool) -> None:
    walk(steps, autologous)


def _mostly_forward() -> st.SearchStrategy[list[tuple[str, int, int]]]:
    """Stage events only, times moving forward: reaches the deep stages and the remanufacture loop."""
    stage_labels = sorted(
        label
        for label, (event_type, _) in PROBES.items()
        if event_type in EVENT_STAGE and event_type is not E.product_infused
    )
    forward_step = st.tuples(
        st.sampled_from(stage_labels),
        st.integers(min_value=0, max_value=600),
        st.integers(min_value=-2, max_value=60),
    )
    return st.lists(forward_step, min_size=5, max_size=40)


@settings(max_examples=200, deadline=None)
@given(_mostly_forward(), st.booleans())
def test_forward_heavy_sequences_never_reach_a_forbidden_state(steps: list[tuple[str, int, int]],
                                                               autologous: bool) -> None:
    seen = walk(steps, autologous)
    assert all(status in MAIN_LINE or status is S.failed for status in seen)


_GATED_STAGES = {S.shipped, S.received, S.infusion_scheduled, S.infused}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(set(PROBES) - {"order.cancelled", "order.on_hold"})),
                          st.integers(min_value=0, max_value=600), st.integers(min_value=1, max_value=60)),
                min_size=1, max_size=30),
       st.booleans())
def test_every_gated_stage_reached_had_its_gates_passed(steps: list[tuple[str, int, int]],
                                                        autologous: bool) -> None:
    """Forward-moving sequences reach the gated stages often; the witness checks each time they do."""
    walk(steps, autologous)


def test_the_gated_stages_are_reachable_so_the_property_is_not_vacuous() -> None:
    steps = [("collection.completed", 10, 1), ("manufacturing.completed", 10, 30),
             ("release.passed", 10, 1), ("shipment.dispatched", 10, 1), ("product.infused", 10, 1)]
    assert walk(steps, autologous=True)[-1] is S.infused
    assert set(walk(steps, autologous=True)) >= {S.shipped, S.infused}
