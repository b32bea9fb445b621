"""The lifecycle's safety gates (issue 11, item 5), decided by the pure state machine.

* for an autologous product ``manufacturing.*`` needs collected material (``no-material``);
* ``shipment.dispatched``, ``shipment.received``, ``infusion.scheduled`` and ``product.infused`` need
  a release decision of the current manufacturing run (``not-released``); a remanufacture resets it;
* a release decision needs a completed run (``invalid-transition``); ``not_releasable`` is never gated.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.cli.goldens import FIXTURES, load_case
from gateway.config import load_settings
from gateway.errors import FieldError, LifecycleError
from gateway.intake.lifecycle import (
    EVENT_STAGE,
    NEEDS_MATERIAL,
    NEEDS_RELEASE,
    Decision,
    LifecycleState,
    decide,
    has_release_decision,
    initial_state,
)
from gateway.intake.replay import replay_journey
from mappings.domain import EventType, OrderStatus
from mappings.events import EVENT_DATA_MODELS

E = EventType
S = OrderStatus
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

DATA: dict[EventType, dict[str, Any]] = {
    E.collection_completed: {"collected_at": T0},
    E.manufacturing_completed: {"lot": "L1", "expires_at": T0 + timedelta(days=90)},
    E.release_failed: {"reason": "sterility OOS", "disposition": "remanufacture"},
    E.shipment_received: {"received_at": T0},
    E.infusion_scheduled: {"start": T0 + timedelta(days=20)},
    E.product_infused: {"infused_at": T0},
    E.order_on_hold: {"reason": "patient hospitalised"},
    E.order_cancelled: {"reason": "patient withdrew"},
}


def apply(
    state: LifecycleState, event_type: EventType, hours: float, *, autologous: bool = True, **fields: Any
) -> Decision:
    data = EVENT_DATA_MODELS[event_type].model_validate({**DATA.get(event_type, {}), **fields})
    return decide(state, event_type, T0 + timedelta(hours=hours), data, autologous=autologous)


def refused(state: LifecycleState, event_type: EventType, hours: float, **kwargs: Any) -> LifecycleError:
    with pytest.raises(LifecycleError) as excinfo:
        apply(state, event_type, hours, **kwargs)
    return excinfo.value


def run(
    *steps: tuple[EventType, float] | tuple[EventType, float, dict[str, Any]], autologous: bool = True
) -> LifecycleState:
    state = initial_state(T0)
    for step in steps:
        decision = apply(
            state, step[0], step[1], autologous=autologous, **(step[2] if len(step) == 3 else {})
        )
        assert not decision.late, step
        state = decision.state
    return state


RELEASED = ((E.collection_completed, 1), (E.manufacturing_completed, 2), (E.release_passed, 3))


# --------------------------------------------------------------------------- the sequence from the issue


def test_the_issue_sequence_placed_dispatched_infused_is_refused_not_released() -> None:
    placed = initial_state(T0)
    for event_type in (E.shipment_dispatched, E.product_infused):
        error = refused(placed, event_type, 1)
        assert (error.code, error.status) == ("not-released", 409)
        assert error.errors == [
            FieldError(
                "/type",
                "the current manufacturing run has no release decision yet (release.passed, or "
                "release.failed with exception_release)",
            )
        ]
        assert "'placed'" in error.detail


@pytest.mark.parametrize("event_type", sorted(NEEDS_RELEASE))
@pytest.mark.parametrize(
    "stage", [S.placed, S.confirmed, S.apheresis_scheduled, S.collected, S.manufacturing, S.manufactured]
)
@pytest.mark.parametrize("autologous", [True, False])
def test_every_gated_event_needs_a_release_decision(
    event_type: EventType, stage: OrderStatus, autologous: bool
) -> None:
    state = LifecycleState(status=stage, stage=stage, stage_occurred_at=T0)
    assert refused(state, event_type, 1, autologous=autologous).code == "not-released"


@pytest.mark.parametrize("event_type", sorted(NEEDS_RELEASE))
@pytest.mark.parametrize("disposition", ["passed", "exception_release"])
def test_a_release_decision_opens_the_gate(event_type: EventType, disposition: str) -> None:
    decision_event = (
        (E.release_passed, 3)
        if disposition == "passed"
        else (E.release_failed, 3, {"disposition": "exception_release"})
    )
    state = run((E.collection_completed, 1), (E.manufacturing_completed, 2), decision_event)
    assert has_release_decision(state)
    assert apply(state, event_type, 4).state.status is EVENT_STAGE[event_type]


# --------------------------------------------------------------------------- material for autologous products


@pytest.mark.parametrize("event_type", sorted(NEEDS_MATERIAL))
@pytest.mark.parametrize("stage", [S.placed, S.confirmed, S.apheresis_scheduled])
def test_autologous_manufacturing_needs_collected_material(event_type: EventType, stage: OrderStatus) -> None:
    state = LifecycleState(status=stage, stage=stage, stage_occurred_at=T0)
    error = refused(state, event_type, 1)
    assert (error.code, error.status) == ("no-material", 409)
    assert error.errors == [
        FieldError("/type", "no cells have been collected for this order yet (collection.completed)")
    ]
    assert "autologous" in error.detail


@pytest.mark.parametrize("event_type", sorted(NEEDS_MATERIAL))
def test_allogeneic_manufacturing_needs_no_collection(event_type: EventType) -> None:
    assert apply(initial_state(T0), event_type, 1, autologous=False).late is False


def test_decide_requires_the_autologous_keyword() -> None:
    data = EVENT_DATA_MODELS[E.order_confirmed].model_validate({})
    with pytest.raises(TypeError):
        decide(initial_state(T0), E.order_confirmed, T0, data)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        decide(initial_state(T0), E.order_confirmed, T0, data, True)  # type: ignore[misc]


# --------------------------------------------------------------------------- release needs a completed run


@pytest.mark.parametrize("stage", [S.placed, S.collected, S.manufacturing])
@pytest.mark.parametrize("fields", [{}, {"disposition": "exception_release"}])
def test_a_release_decision_needs_a_completed_run(stage: OrderStatus, fields: dict[str, Any]) -> None:
    event_type = E.release_failed if fields else E.release_passed
    state = LifecycleState(status=stage, stage=stage, stage_occurred_at=T0)
    error = refused(state, event_type, 1, autologous=False, **fields)
    assert (error.code, error.status) == ("invalid-transition", 409)
    assert error.errors == [
        FieldError(
            "/type", "a release decision needs a completed manufacturing run (manufacturing.completed)"
        )
    ]


def test_not_releasable_is_never_gated() -> None:
    failed = apply(initial_state(T0), E.release_failed, 1, disposition="not_releasable").state
    assert failed.status is S.failed


# --------------------------------------------------------------------------- current run, holds, late events


def test_a_remanufacture_resets_the_release_decision() -> None:
    state = run(*RELEASED, (E.release_failed, 4))  # remanufacture
    assert (state.status, has_release_decision(state)) == (S.manufacturing, False)
    assert refused(state, E.shipment_dispatched, 5).code == "not-released"
    remade = apply(state, E.manufacturing_completed, 6).state
    assert refused(remade, E.shipment_dispatched, 7).code == "not-released"  # completed, not yet released
    released = apply(remade, E.release_passed, 8).state
    assert apply(released, E.shipment_dispatched, 9).state.status is S.shipped


def test_a_release_of_the_failed_run_does_not_release_the_new_one() -> None:
    state = run(*RELEASED, (E.release_failed, 4), (E.manufacturing_completed, 6))
    error = refused(state, E.release_passed, 3.5)  # dated in the failed run
    assert error.code == "out-of-order"
    assert refused(state, E.shipment_dispatched, 7).code == "not-released"


def test_a_hold_is_reported_first_and_the_gate_still_applies_after_resuming() -> None:
    held = run((E.collection_completed, 1), (E.order_on_hold, 2))
    assert refused(held, E.shipment_dispatched, 3).code == "order-on-hold"
    resumed = apply(held, E.order_resumed, 4).state
    assert refused(resumed, E.shipment_dispatched, 5).code == "not-released"
    released_then_held = run(*RELEASED, (E.order_on_hold, 4), (E.order_resumed, 5))
    assert apply(released_then_held, E.shipment_dispatched, 6).state.status is S.shipped


def test_late_events_are_not_gated_they_never_move_the_order() -> None:
    shipped = run(*RELEASED, (E.shipment_dispatched, 10))
    late = apply(shipped, E.shipment_dispatched, 9)  # an earlier dispatch record, accepted late
    assert late == Decision(shipped, late=True)
    assert apply(shipped, E.manufacturing_started, 1.5).late is True


def test_a_cancelled_order_before_release_cannot_be_shipped() -> None:
    cancelled = run((E.collection_completed, 1), (E.order_cancelled, 2))
    assert refused(cancelled, E.shipment_dispatched, 3).code == "terminal-state"


def test_the_full_gated_journey_reaches_infused() -> None:
    state = run(
        *RELEASED,
        (E.shipment_dispatched, 4),
        (E.shipment_received, 5),
        (E.infusion_scheduled, 6),
        (E.product_infused, 7),
    )
    assert state.status is S.infused


# --------------------------------------------------------------------------- the golden and bench journeys


@pytest.mark.parametrize("path", sorted((FIXTURES / "events").glob("*.json")), ids=lambda p: p.stem)
def test_every_fixture_journey_passes_the_gates(path) -> None:  # type: ignore[no-untyped-def]
    """The golden cases (also the bench workload) are real journeys: no event of theirs is refused by a
    gate or as an implausible time (journey-cancelled's event after the cancellation is refused on
    purpose)."""
    case = load_case(path)
    steps = replay_journey(load_settings(), case.order, case.events, placed_at=case.placed_at)
    codes = {step.refusal.code for step in steps if step.refusal is not None}
    assert not codes & {"no-material", "not-released", "invalid-transition", "validation-failed"}, codes
    assert codes <= {"terminal-state"}
