"""The lifecycle state machine: every event type, every refusal code, late events, holds, shelf life."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.errors import FieldError, LifecycleError
from gateway.intake.lifecycle import STAGES, Decision, LifecycleState, decide, initial_state
from gateway.intake.lifecycle_table import (
    probe_events,
    probe_states,
    render_markdown,
    state_label,
    transition_table,
)
from mappings.domain import EventType, OrderStatus, StrictModel
from mappings.events import EVENT_DATA_MODELS

E = EventType
S = OrderStatus
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
DOC = Path(__file__).resolve().parents[2] / "docs" / "lifecycle.md"

DEFAULT_DATA: dict[EventType, dict[str, Any]] = {
    E.apheresis_scheduled: {"start": T0 + timedelta(days=3)},
    E.apheresis_rescheduled: {"start": T0 + timedelta(days=5), "reason": "donor unwell"},
    E.collection_completed: {"collected_at": T0, "din": "A999921123456"},
    E.custody_transferred: {"from_party": "site-a", "to_party": "courier", "at": T0},
    E.manufacturing_completed: {"lot": "L1", "expires_at": T0 + timedelta(days=30)},
    E.release_failed: {"reason": "sterility OOS", "disposition": "remanufacture"},
    E.shipment_received: {"received_at": T0},
    E.infusion_scheduled: {"start": T0 + timedelta(days=10)},
    E.product_infused: {"infused_at": T0},
    E.order_on_hold: {"reason": "patient hospitalised"},
    E.order_cancelled: {"reason": "patient withdrew"},
}


def data(event_type: EventType, **fields: Any) -> StrictModel:
    return EVENT_DATA_MODELS[event_type].model_validate({**DEFAULT_DATA.get(event_type, {}), **fields})


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def apply(
    state: LifecycleState, event_type: EventType, hours: float, *, autologous: bool = True, **fields: Any
) -> Decision:
    return decide(state, event_type, at(hours), data(event_type, **fields), autologous=autologous)


def run(*steps: tuple[EventType, float] | tuple[EventType, float, dict[str, Any]]) -> LifecycleState:
    state = initial_state(T0)
    for step in steps:
        fields = step[2] if len(step) == 3 else {}
        decision = apply(state, step[0], step[1], **fields)
        assert not decision.late, step
        state = decision.state
    return state


def refused(
    state: LifecycleState, event_type: EventType, hours: float, *, autologous: bool = True, **fields: Any
) -> LifecycleError:
    with pytest.raises(LifecycleError) as excinfo:
        apply(state, event_type, hours, autologous=autologous, **fields)
    return excinfo.value


def at_stage(stage: OrderStatus, hours: float = 10) -> LifecycleState:
    return LifecycleState(status=stage, stage=stage, stage_occurred_at=at(hours))


# --------------------------------------------------------------------------- the happy path


def test_initial_state_is_placed_at_the_placement_time() -> None:
    state = initial_state(T0)
    assert (state.status, state.stage, state.stage_occurred_at) == (S.placed, S.placed, T0)
    assert state.expires_at is None and state.remanufactured_at is None


def test_full_happy_path_walks_every_stage_in_order() -> None:
    path = [
        (E.order_confirmed, S.confirmed),
        (E.apheresis_scheduled, S.apheresis_scheduled),
        (E.apheresis_rescheduled, S.apheresis_scheduled),
        (E.collection_completed, S.collected),
        (E.custody_transferred, S.collected),
        (E.manufacturing_started, S.manufacturing),
        (E.manufacturing_completed, S.manufactured),
        (E.release_passed, S.released),
        (E.shipment_dispatched, S.shipped),
        (E.shipment_received, S.received),
        (E.infusion_scheduled, S.infusion_scheduled),
        (E.product_infused, S.infused),
    ]
    state = initial_state(T0)
    for hours, (event_type, expected) in enumerate(path, start=1):
        decision = apply(state, event_type, hours)
        assert (decision.state.status, decision.late) == (expected, False), event_type
        state = decision.state
    assert state.expires_at == T0 + timedelta(days=30)
    assert state.stage_occurred_at == at(len(path))


@pytest.mark.parametrize(
    ("start", "event_type", "fields", "expected"),
    [
        # from the earliest stage the safety gates allow (see the gate tests below)
        (S.placed, E.order_confirmed, {}, S.confirmed),
        (S.placed, E.apheresis_scheduled, {}, S.apheresis_scheduled),
        (S.placed, E.apheresis_rescheduled, {}, S.apheresis_scheduled),
        (S.placed, E.collection_completed, {}, S.collected),
        (S.collected, E.manufacturing_started, {}, S.manufacturing),
        (S.collected, E.manufacturing_completed, {}, S.manufactured),
        (S.manufactured, E.release_passed, {}, S.released),
        (S.manufactured, E.release_failed, {"disposition": "exception_release"}, S.released),
        (S.placed, E.release_failed, {"disposition": "not_releasable"}, S.failed),
        (S.released, E.shipment_dispatched, {}, S.shipped),
        (S.released, E.shipment_received, {}, S.received),
        (S.released, E.infusion_scheduled, {}, S.infusion_scheduled),
        (S.released, E.product_infused, {}, S.infused),
        (S.placed, E.order_on_hold, {}, S.on_hold),
        (S.placed, E.order_cancelled, {}, S.cancelled),
    ],
)
def test_forward_moves_may_skip_stages(
    start: OrderStatus, event_type: EventType, fields: dict[str, Any], expected: OrderStatus
) -> None:
    decision = apply(at_stage(start, hours=0), event_type, 1, **fields)
    assert (decision.state.status, decision.late) == (expected, False)


def test_a_forward_move_records_the_stage_time() -> None:
    state = apply(initial_state(T0), E.collection_completed, 5).state
    assert (state.stage, state.stage_occurred_at) == (S.collected, at(5))


# --------------------------------------------------------------------------- late and out-of-order


@pytest.mark.parametrize("hours", [-100, 9, 10])
def test_a_behind_stage_event_not_after_the_stage_time_is_late_and_changes_nothing(hours: float) -> None:
    state = at_stage(S.shipped, hours=10)
    decision = apply(state, E.collection_completed, hours)
    assert decision.late is True
    assert decision.state == state


def test_a_behind_stage_event_after_the_stage_time_is_out_of_order() -> None:
    error = refused(at_stage(S.shipped, hours=10), E.release_passed, 11)
    assert (error.code, error.status) == ("out-of-order", 409)
    assert error.errors == [
        FieldError(
            "/occurred_at", "must not be after 2026-03-02T18:00:00+00:00 for a late release.passed event"
        )
    ]
    assert "behind the order's stage 'shipped'" in error.detail


def test_rescheduling_is_a_same_stage_update_not_a_late_event() -> None:
    state = run((E.apheresis_scheduled, 1))
    decision = apply(state, E.apheresis_rescheduled, 2)
    assert (decision.late, decision.state.status, decision.state.stage_occurred_at) == (
        False,
        S.apheresis_scheduled,
        at(2),
    )
    again = apply(decision.state, E.apheresis_rescheduled, 2)  # same instant: still an update
    assert again.late is False


def test_an_older_same_stage_event_is_late() -> None:
    state = run((E.apheresis_rescheduled, 5))
    decision = apply(state, E.apheresis_scheduled, 4)
    assert decision.late is True and decision.state == state


def test_late_events_are_accepted_while_on_hold() -> None:
    state = run((E.collection_completed, 5), (E.order_on_hold, 6))
    decision = apply(state, E.order_confirmed, 1)
    assert decision.late is True and decision.state == state


# --------------------------------------------------------------------------- terminal states


# The first steps of every journey that gets as far as a product: collected, made, released.
COLLECTED = (E.collection_completed, 0.5)
MADE = (COLLECTED, (E.manufacturing_completed, 0.7))
RELEASED = (*MADE, (E.release_passed, 0.9))

TERMINAL = [
    ("infused", lambda: run(*RELEASED, (E.product_infused, 2))),
    ("cancelled", lambda: run((E.collection_completed, 1), (E.order_cancelled, 2))),
    (
        "failed",
        lambda: run(*MADE, (E.release_failed, 2, {"disposition": "not_releasable"})),
    ),
]


@pytest.mark.parametrize(("name", "make"), TERMINAL)
@pytest.mark.parametrize(
    "event_type", [t for t in EventType if t not in (E.custody_transferred, E.order_placed)]
)
@pytest.mark.parametrize("hours", [0, 50])  # late (before the stage time) as well as after
def test_terminal_states_accept_no_further_stage_events(
    name: str, make: Any, event_type: EventType, hours: float
) -> None:
    error = refused(make(), event_type, hours)
    assert (error.code, error.status) == ("terminal-state", 409)
    assert error.errors == [FieldError("/type", f"not accepted once the order is {name}")]


@pytest.mark.parametrize(("name", "make"), TERMINAL)
def test_custody_records_are_accepted_in_terminal_states_once_cells_exist(name: str, make: Any) -> None:
    state = make()
    decision = apply(state, E.custody_transferred, 50)
    assert decision == Decision(state, late=False)


def test_custody_after_a_cancellation_before_collection_has_no_material() -> None:
    state = run((E.order_confirmed, 1), (E.order_cancelled, 2))
    error = refused(state, E.custody_transferred, 3)
    assert (error.code, error.status) == ("no-material", 409)


@pytest.mark.parametrize("stage", [S.placed, S.confirmed, S.apheresis_scheduled])
def test_custody_before_collection_is_refused_no_material(stage: OrderStatus) -> None:
    error = refused(at_stage(stage), E.custody_transferred, 11)
    assert (error.code, error.status) == ("no-material", 409)
    assert error.errors == [FieldError("/type", "no cells have been collected for this order yet")]
    assert repr(str(stage)) in error.detail


@pytest.mark.parametrize("stage", STAGES[3:-1])
def test_custody_never_moves_the_state(stage: OrderStatus) -> None:
    state = at_stage(stage)
    assert apply(state, E.custody_transferred, -50) == Decision(state, late=False)


# --------------------------------------------------------------------------- hold and resume


def test_hold_and_resume_return_to_the_stage_held() -> None:
    held = run((E.collection_completed, 1), (E.order_on_hold, 2))
    assert (held.status, held.stage) == (S.on_hold, S.collected)
    resumed = apply(held, E.order_resumed, 3).state
    assert resumed == run((E.collection_completed, 1))


@pytest.mark.parametrize(
    "event_type",
    [E.manufacturing_started, E.collection_completed, E.product_infused, E.infusion_scheduled],
)
def test_stage_events_other_than_late_ones_are_refused_while_on_hold(event_type: EventType) -> None:
    held = run((E.collection_completed, 1), (E.order_on_hold, 2))
    error = refused(held, event_type, 3)
    assert (error.code, error.status) == ("order-on-hold", 409)
    assert error.errors == [FieldError("/type", "refused while the order is on hold")]


def test_on_hold_accepts_custody_and_cancellation() -> None:
    held = run((E.collection_completed, 1), (E.order_on_hold, 2))
    assert apply(held, E.custody_transferred, 3) == Decision(held, late=False)
    cancelled = apply(held, E.order_cancelled, 3).state
    assert (cancelled.status, cancelled.stage) == (S.cancelled, S.collected)


def test_a_second_hold_is_refused() -> None:
    held = run((E.order_on_hold, 1))
    error = refused(held, E.order_on_hold, 2)
    assert (error.code, error.errors) == ("order-on-hold", [FieldError("/type", "already on hold")])


@pytest.mark.parametrize("stage", STAGES[:-1])
def test_resume_when_not_on_hold_is_refused(stage: OrderStatus) -> None:
    error = refused(at_stage(stage), E.order_resumed, 11)
    assert (error.code, error.status) == ("not-on-hold", 409)
    assert error.errors == [FieldError("/type", "the order is not on hold")]


# --------------------------------------------------------------------------- remanufacture


@pytest.mark.parametrize(
    "from_events",
    [
        [COLLECTED, (E.manufacturing_completed, 1)],
        [COLLECTED, (E.manufacturing_completed, 1), (E.release_passed, 2)],
    ],
)
def test_remanufacture_returns_to_manufacturing_and_forgets_the_shelf_life(from_events: list[Any]) -> None:
    state = run(*from_events)
    assert state.expires_at is not None
    decision = apply(state, E.release_failed, 5)
    assert decision.late is False
    assert decision.state == LifecycleState(
        status=S.manufacturing, stage=S.manufacturing, stage_occurred_at=at(5), remanufactured_at=at(5)
    )


def test_the_remanufacture_loop_can_run_twice_and_then_finish() -> None:
    new_expiry = T0 + timedelta(days=60)
    state = run(
        COLLECTED,
        (E.manufacturing_completed, 1),
        (E.release_failed, 2),
        (E.manufacturing_completed, 3),
        (E.release_failed, 4),
        (E.manufacturing_completed, 5, {"expires_at": new_expiry}),
        (E.release_passed, 6),
        (E.shipment_dispatched, 7),
        (E.infusion_scheduled, 8, {"start": new_expiry}),
    )
    assert (state.status, state.expires_at, state.remanufactured_at) == (
        S.infusion_scheduled,
        new_expiry,
        at(4),
    )


@pytest.mark.parametrize(
    "stage", [S.placed, S.confirmed, S.apheresis_scheduled, S.collected, S.manufacturing]
)
def test_remanufacture_without_a_manufactured_product_is_an_invalid_transition(stage: OrderStatus) -> None:
    error = refused(at_stage(stage), E.release_failed, 11)
    assert (error.code, error.status) == ("invalid-transition", 409)
    assert error.errors == [
        FieldError("/data/disposition", "remanufacture is allowed only from manufactured or released")
    ]


def test_a_second_remanufacture_dated_before_the_first_is_an_invalid_transition() -> None:
    # Found by the property test: the disposition rule is checked before the remanufacture cut-off,
    # so the answer matches the documented table (no manufactured product to remanufacture).
    state = run(COLLECTED, (E.manufacturing_completed, 1), (E.release_failed, 5))
    error = refused(state, E.release_failed, 4)
    assert (error.code, error.status) == ("invalid-transition", 409)
    assert error.errors[0].pointer == "/data/disposition"


def test_remanufacture_dated_before_the_product_was_manufactured_is_out_of_order() -> None:
    error = refused(at_stage(S.manufactured, hours=10), E.release_failed, 9)
    assert error.code == "out-of-order" and error.errors[0].pointer == "/occurred_at"


def test_a_remanufacture_after_shipment_is_late_or_out_of_order() -> None:
    state = at_stage(S.shipped, hours=10)
    assert apply(state, E.release_failed, 9).late is True
    assert refused(state, E.release_failed, 11).code == "out-of-order"


def test_forward_events_from_the_failed_run_are_refused_after_a_remanufacture() -> None:
    state = run(COLLECTED, (E.manufacturing_completed, 1), (E.release_failed, 5))
    assert apply(state, E.manufacturing_started, 4).late is True  # a late record of the old run is fine
    # the new run is complete at 6: a release dated before the remanufacture decision is the old product's
    remade = apply(state, E.manufacturing_completed, 6).state
    error = refused(remade, E.release_passed, 4)
    assert error.code == "out-of-order"
    assert error.errors == [FieldError("/occurred_at", "must not be before 2026-03-02T13:00:00+00:00")]
    assert apply(remade, E.release_passed, 7).state.status is S.released


# --------------------------------------------------------------------------- shelf life


def test_infusion_scheduled_after_the_expiry_is_beyond_shelf_life() -> None:
    expiry = T0 + timedelta(days=30)
    state = run(COLLECTED, (E.manufacturing_completed, 1, {"expires_at": expiry}), (E.release_passed, 2))
    error = refused(state, E.infusion_scheduled, 3, start=expiry + timedelta(minutes=1))
    assert (error.code, error.status) == ("beyond-shelf-life", 422)
    assert error.errors == [
        FieldError("/data/start", "must not be after the product's expiry 2026-04-01T08:00:00+00:00")
    ]
    assert apply(state, E.infusion_scheduled, 3, start=expiry).state.status is S.infusion_scheduled


def test_rescheduling_an_infusion_beyond_the_expiry_is_refused_too() -> None:
    expiry = T0 + timedelta(days=30)
    state = run(
        COLLECTED, (E.manufacturing_completed, 1, {"expires_at": expiry}), (E.release_passed, 1.5),
        (E.infusion_scheduled, 2),
    )
    assert (
        refused(state, E.infusion_scheduled, 3, start=expiry + timedelta(days=1)).code == "beyond-shelf-life"
    )


def test_without_a_known_expiry_the_shelf_life_check_cannot_apply() -> None:
    state = at_stage(S.received, hours=1)  # e.g. an order stored before expiries were kept
    start = T0 + timedelta(days=3650)
    assert apply(state, E.infusion_scheduled, 2, start=start).state.status is S.infusion_scheduled


def test_a_late_manufacturing_completed_fills_a_missing_expiry_but_nothing_else() -> None:
    state = at_stage(S.received, hours=5)  # no expiry known (stored before expiries were kept)
    decision = apply(state, E.manufacturing_completed, 1)
    assert decision.late is True
    assert decision.state == state.model_copy(update={"expires_at": T0 + timedelta(days=30)})
    assert (
        refused(decision.state, E.infusion_scheduled, 6, start=T0 + timedelta(days=31)).code
        == "beyond-shelf-life"
    )
    # a known expiry is never replaced by a late event
    other = apply(decision.state, E.manufacturing_completed, 2, expires_at=T0 + timedelta(days=90))
    assert other.state.expires_at == T0 + timedelta(days=30)


def test_a_manufacturing_completed_update_replaces_the_expiry() -> None:
    state = run(COLLECTED, (E.manufacturing_completed, 1))
    updated = apply(state, E.manufacturing_completed, 2, expires_at=T0 + timedelta(days=7)).state
    assert updated.expires_at == T0 + timedelta(days=7)


# --------------------------------------------------------------------------- contract edges


def test_order_placed_cannot_be_decided_on_an_existing_order() -> None:
    error = refused(initial_state(T0), E.order_placed, 1)
    assert (error.code, error.status) == ("invalid-transition", 409)


def test_data_of_the_wrong_type_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="data for order.confirmed must be OrderConfirmedData"):
        decide(initial_state(T0), E.order_confirmed, T0, data(E.order_cancelled), autologous=True)


def test_naive_times_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(initial_state(T0), E.order_confirmed, datetime(2026, 1, 1), data(E.order_confirmed),
               autologous=True)
    with pytest.raises(ValidationError):
        initial_state(datetime(2026, 1, 1))


def test_state_round_trips_through_json() -> None:
    state = run(COLLECTED, (E.manufacturing_completed, 1), (E.release_failed, 2), (E.order_on_hold, 3))
    dumped = json.loads(json.dumps(state.model_dump(mode="json")))
    assert dumped["status"] == "on_hold" and dumped["stage"] == "manufacturing"
    assert LifecycleState.model_validate(dumped) == state


@pytest.mark.parametrize(
    "fields",
    [
        {"status": "confirmed", "stage": "placed"},
        {"status": "on_hold", "stage": "on_hold"},
        {"status": "cancelled", "stage": "infused"},
        {"status": "confirmed", "stage": "confirmed", "surprise": 1},
    ],
)
def test_inconsistent_states_are_refused_on_load(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        LifecycleState.model_validate({"stage_occurred_at": T0.isoformat(), **fields})


def test_every_refusal_has_a_detail_and_field_errors() -> None:
    cases = [
        (at_stage(S.infused), E.order_confirmed, 11),
        (at_stage(S.shipped), E.release_passed, 11),
        (at_stage(S.collected), E.release_failed, 11),
        (run((E.order_on_hold, 1)), E.order_confirmed, 11),
        (at_stage(S.placed), E.order_resumed, 11),
        (at_stage(S.placed), E.custody_transferred, 11),
        (at_stage(S.manufactured), E.shipment_dispatched, 11),
    ]
    codes = set()
    for state, event_type, hours in cases:
        error = refused(state, event_type, hours)
        codes.add(error.code)
        assert (
            error.detail
            and error.errors
            and all(e.pointer.startswith("/") and e.reason for e in error.errors)
        )
    assert codes == {
        "terminal-state",
        "out-of-order",
        "invalid-transition",
        "order-on-hold",
        "not-on-hold",
        "no-material",
        "not-released",
    }


# --------------------------------------------------------------------------- the documented table


def test_docs_lifecycle_md_is_generated_from_the_code() -> None:
    assert DOC.read_text(encoding="utf-8") == render_markdown(), (
        "docs/lifecycle.md disagrees with gateway/intake/lifecycle.py; regenerate it with "
        "`.venv/bin/python -m gateway.intake.lifecycle_table > docs/lifecycle.md` and review the diff"
    )


def test_the_table_covers_every_event_from_every_state_exactly_once() -> None:
    rows = transition_table()
    labels = [state_label(state) for state in probe_states()]
    for event_label, _, _ in probe_events():
        covered = [label for row in rows if row.event == event_label for label in row.from_states]
        assert covered == labels, event_label
    assert {label for label, _, _ in probe_events()} >= {
        str(t) for t in EventType if t is not E.release_failed
    }


@pytest.mark.parametrize("disposition", ["not_releasable", "exception_release"])
def test_a_release_decision_from_the_failed_run_cannot_decide_the_new_run(disposition: str) -> None:
    state = run(
        COLLECTED, (E.manufacturing_completed, 1), (E.release_failed, 5), (E.manufacturing_completed, 6)
    )
    error = refused(state, E.release_failed, 4, disposition=disposition)
    assert error.code == "out-of-order"
    assert apply(state, E.release_failed, 7, disposition=disposition).state.status in (S.failed, S.released)
