"""The order history translation sees: read incrementally from the per-process cache, yet always
exactly the committed events (another process's included, a rolled-back one never)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.context import build_context
from gateway.intake import pipeline
from gateway.intake.events import accept_event
from gateway.intake.order_history import HISTORY_CACHE, History, load_history, lock_order
from gateway.intake.orders import accept_order
from gateway.store.db import make_engine, write_session
from mappings.events import EventIn
from mappings.orders import OrderIn
from tests.conftest import event_body, order_body

T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
NOW = T0 + timedelta(days=1)  # the clock: the events below (T0 + hours) are posted after they happened
CONFIRM = ("E1", "order.confirmed", {})
SCHEDULE = ("E2", "apheresis.scheduled", {"start": (T0 + timedelta(days=3)).isoformat()})
RESCHEDULE = ("E3", "apheresis.rescheduled", {"start": (T0 + timedelta(days=4)).isoformat()})


def _event(step: tuple[str, str, dict], hours: int) -> EventIn:
    event_id, type_, data = step
    occurred_at = (T0 + timedelta(hours=hours)).isoformat()
    return EventIn.model_validate(event_body(event_id, type_, occurred_at, data))


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The event ids of every snapshot handed to the translation, in call order."""
    calls: list[list[str]] = []
    original = pipeline.process_event

    def recording(session, snapshot, record, context, now):  # type: ignore[no-untyped-def]
        calls.append([e.event_id for e in snapshot.events])
        return original(session, snapshot, record, context, now)

    monkeypatch.setattr(pipeline, "process_event", recording)
    return calls


def _full_read(engine, order_id: str) -> History:  # type: ignore[no-untyped-def]
    with write_session(engine) as session:
        conn = session.connection()
        order = lock_order(conn, "acme-bio", order_id)
        assert order is not None
        return load_history(conn, order, None)


def test_history_cached_after_commit_and_extended_incrementally(settings, engine, seen):
    context = build_context(settings, engine, now=lambda: NOW)
    placed = accept_order(context, "acme-bio", OrderIn.model_validate(order_body("HIST-1")))
    accept_event(context, "acme-bio", "HIST-1", _event(CONFIRM, 1))
    accept_event(context, "acme-bio", "HIST-1", _event(SCHEDULE, 2))
    assert seen == [["HIST-1:placed"], ["HIST-1:placed", "E1"], ["HIST-1:placed", "E1", "E2"]]
    cached = HISTORY_CACHE.get(engine, placed.order_pk)
    assert cached is not None
    assert cached == _full_read(engine, "HIST-1")  # same order body, same records, same order


def test_another_process_writing_the_order_is_seen(settings, engine, seen):
    context = build_context(settings, engine, now=lambda: NOW)
    accept_order(context, "acme-bio", OrderIn.model_validate(order_body("HIST-2")))
    accept_event(context, "acme-bio", "HIST-2", _event(CONFIRM, 1))
    other_engine = make_engine(engine.url.render_as_string(hide_password=False))  # its own cache
    try:
        other = build_context(settings, other_engine, now=lambda: NOW)
        accept_event(other, "acme-bio", "HIST-2", _event(SCHEDULE, 2))
    finally:
        other_engine.dispose()
    created = accept_event(context, "acme-bio", "HIST-2", _event(RESCHEDULE, 3))
    assert created.created and created.row.sequence == 3
    assert seen[-1] == ["HIST-2:placed", "E1", "E2", "E3"]
    assert [e.event_id for e in _full_read(engine, "HIST-2").events] == seen[-1]


def test_rolled_back_event_never_reaches_the_cache(settings, engine, seen, monkeypatch):
    context = build_context(settings, engine, now=lambda: NOW)
    placed = accept_order(context, "acme-bio", OrderIn.model_validate(order_body("HIST-3")))
    accept_event(context, "acme-bio", "HIST-3", _event(CONFIRM, 1))
    recording = pipeline.process_event

    def failing(session, snapshot, record, context, now):  # type: ignore[no-untyped-def]
        recording(session, snapshot, record, context, now)
        raise RuntimeError("translation failed")

    monkeypatch.setattr(pipeline, "process_event", failing)
    with pytest.raises(RuntimeError):
        accept_event(context, "acme-bio", "HIST-3", _event(SCHEDULE, 2))
    cached = HISTORY_CACHE.get(engine, placed.order_pk)
    assert cached is not None and [e.event_id for e in cached.events] == ["HIST-3:placed", "E1"]
    monkeypatch.setattr(pipeline, "process_event", recording)
    retried = accept_event(context, "acme-bio", "HIST-3", _event(RESCHEDULE, 3))
    assert retried.row.sequence == 2
    assert seen[-1] == ["HIST-3:placed", "E1", "E3"]


def test_a_cached_history_that_is_not_a_prefix_is_read_again(settings, engine):
    context = build_context(settings, engine, now=lambda: NOW)
    accept_order(context, "acme-bio", OrderIn.model_validate(order_body("HIST-4")))
    accept_event(context, "acme-bio", "HIST-4", _event(CONFIRM, 1))
    accept_event(context, "acme-bio", "HIST-4", _event(SCHEDULE, 2))
    truth = _full_read(engine, "HIST-4")
    ids = (truth.order_pk, truth.manufacturer_id)
    not_e1 = truth.events[1].model_copy(update={"event_id": "NOT-E1"})
    wrong_last = History(*ids, truth.order_id, truth.body_sha256, truth.order, (truth.events[0], not_e1))
    other_order = History(*ids, "HIST-X", truth.body_sha256, truth.order, truth.events[:1])
    longer = truth.appended(truth.events[-1].model_copy(update={"sequence": 9, "event_id": "E9"}))
    with write_session(engine) as session:
        conn = session.connection()
        order = lock_order(conn, "acme-bio", "HIST-4")
        assert order is not None
        for cached in (wrong_last, other_order, longer, truth):
            assert load_history(conn, order, cached) == truth
