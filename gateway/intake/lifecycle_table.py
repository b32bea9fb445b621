"""The lifecycle's transition table, computed by calling :func:`gateway.intake.lifecycle.decide`
(the source of ``docs/lifecycle.md``: ``python -m gateway.intake.lifecycle_table > docs/lifecycle.md``).

Apart from :mod:`gateway.intake.lifecycle` (which does not import this module): the state machine
decides events at run time; this module only describes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway.errors import LifecycleError
from gateway.intake.lifecycle import _RANK, RULES, STAGES, LifecycleState, decide
from mappings.domain import EventType, OrderStatus, StrictModel
from mappings.events import EVENT_DATA_MODELS

__all__ = [
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
    state: LifecycleState, event_type: EventType, occurred_at: datetime, data: StrictModel, *,
    autologous: bool = True,
) -> str:
    """decide()'s answer in words: ``→ X``, ``update, stays X``, ``late (recorded, no move)``, …"""
    try:
        decision = decide(state, event_type, occurred_at, data, autologous=autologous)
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


def transition_grid(*, autologous: bool = True) -> dict[tuple[str, str], dict[str, str]]:
    """(event label, state label) -> {"before"|"at"|"after": outcome label}, all computed by decide()
    for an autologous (default) or allogeneic product."""
    return {
        (label, state_label(state)): {
            timing: outcome_label(state, event_type, _T0 + delta, data, autologous=autologous)
            for timing, delta in _TIMINGS
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
        "<!-- Generated from gateway/intake/lifecycle.py: "
        "python -m gateway.intake.lifecycle_table > docs/lifecycle.md -->",
        "<!-- Do not edit by hand: tests/unit/test_lifecycle.py fails when it and the code disagree. -->",
        "",
        "The gateway decides every manufacturer event with one pure state machine,",
        "`gateway.intake.lifecycle.decide`.",
        "Refusals are RFC 9457 problems with the stable code shown; nothing is stored for a refused event.",
        "",
        "## Rules",
        "",
        *[f"- {rule}" for rule in RULES],
        "",
        "## Transition table",
        "",
        "Computed by calling `decide` for every event on a representative order of an autologous product",
        "in every state, with the event occurring before, at and after the *stage time*. `on_hold from X`",
        "is an order held at stage X. For an allogeneic product only the `no-material` cells of",
        "`manufacturing.started` and `manufacturing.completed` differ: those events move the order as from",
        "collected.",
        "",
        "| Event | From state | Outcome |",
        "|---|---|---|",
        *[f"| `{row.event}` | {_compact(row.from_states)} | {row.outcome} |" for row in transition_table()],
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # ``python -m gateway.intake.lifecycle_table > docs/lifecycle.md``
    print(render_markdown(), end="")
