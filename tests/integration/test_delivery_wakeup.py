"""A committed enqueue wakes the worker: no waiting for a poll.  Every worker here polls every 30 s,
so a delivery that happens (the test waits on an event, at most 20 s) was started by the wake-up.

Also: the wake-up comes only AFTER the commit (the row is visible to another connection when the
subscriber runs), never for a rolled-back transaction; on PostgreSQL a standalone worker process is
woken by ``LISTEN/NOTIFY``; and a failure to record an outcome after the ACK (as if the worker
died there) leaves the message pending, resent with the same control id before anything queued
after it (at-least-once, FIFO).
"""

from __future__ import annotations

import asyncio
import queue
import signal
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

import gateway.delivery.store as delivery_store_module
from adapters.delivery_result import DeliveryOutcome
from gateway.delivery.outbox import MessageState, NewMessage, OutboxMessage, enqueue
from gateway.delivery.wakeup import PgListener, subscribe
from gateway.delivery.worker import DeliveryWorker
from gateway.store.db import write_session
from tests.integration.test_delivery_support import (
    FAST,
    Peer,
    PeerLoop,
    attempts,
    enqueue_mllp,
    messages,
    start_worker_process,
    wait_until,
    write_config,
)

SLOW_POLL = replace(FAST, poll_interval_s=30.0)
PROMPT_S = 20.0  # a guard against hanging, well below the 30 s poll: not a timing assertion


class RecordingSender:
    """Delivers everything; ``arrived[cid]`` is set when ``cid`` was sent."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.arrived: dict[str, threading.Event] = {}

    def event(self, control_id: str) -> threading.Event:
        return self.arrived.setdefault(control_id, threading.Event())

    async def send(self, message: OutboxMessage) -> DeliveryOutcome:
        self.sent.append(message.control_id)
        self.event(message.control_id).set()
        return DeliveryOutcome("delivered", ack_code="AA", latency_ms=0.1)


def _now() -> datetime:
    return datetime.now(UTC)


def _pending_count(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.execute(select(func.count()).select_from(OutboxMessage)
                                   .where(OutboxMessage.state == MessageState.pending)).scalar_one())


def test_a_committed_enqueue_is_delivered_without_waiting_for_the_poll(engine: Engine) -> None:
    sender = RecordingSender()
    worker = DeliveryWorker(engine, lambda destination: sender, settings=SLOW_POLL)
    stop = worker.run_in_thread()  # returns once the worker listens for wake-ups
    try:
        enqueue_mllp(engine, ["FIRST"])
        assert sender.event("FIRST").wait(PROMPT_S)
        wait_until(lambda: _pending_count(engine) == 0, "FIRST recorded")
        # the queue is empty and the worker has just polled: only a wake-up can bring the next ones
        enqueue_mllp(engine, ["SECOND", "THIRD"])
        assert sender.event("THIRD").wait(PROMPT_S)
        enqueue_mllp(engine, ["OTHER"], destination="site-b/mllp")  # a destination never seen before
        assert sender.event("OTHER").wait(PROMPT_S)
    finally:
        stop()
    assert sender.sent == ["FIRST", "SECOND", "THIRD", "OTHER"]
    assert all(m.state == MessageState.delivered for m in messages(engine))


def test_the_wake_up_comes_after_the_commit_and_never_for_a_rollback(engine: Engine) -> None:
    seen: list[tuple[frozenset[str] | None, int]] = []

    def wake(destinations: frozenset[str] | None) -> None:  # runs in the committing thread
        seen.append((destinations, _pending_count(engine)))  # another connection sees the row now

    def rows(control_id: str) -> list[NewMessage]:
        return [NewMessage(destination="site-a/mllp", channel="mllp", control_id=control_id,
                           message_type="OML^O21", content_type="application/hl7-v2", payload="MSH|x")]

    unsubscribe = subscribe(engine, wake)
    try:
        with write_session(engine) as session:
            enqueue(session, rows("M1"), site_id="site-a", manufacturer_id="acme-bio", order_id="O-1",
                    event_id="E-1", now=_now())
            session.flush()
            assert seen == []  # not before the commit
        assert seen == [(frozenset({"site-a/mllp"}), 1)]
        with pytest.raises(RuntimeError), write_session(engine) as session:
            enqueue(session, rows("M2"), site_id="site-a", manufacturer_id="acme-bio", order_id="O-1",
                    event_id="E-2", now=_now())
            session.flush()
            raise RuntimeError("the event is refused")
        with write_session(engine) as session:  # a later commit that enqueues nothing wakes nobody
            session.execute(select(1))
    finally:
        unsubscribe()
    assert seen == [(frozenset({"site-a/mllp"}), 1)]
    assert _pending_count(engine) == 1


def test_an_outcome_not_recorded_after_the_ack_means_a_resend_first(engine: Engine,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the worker died between the ACK and the commit of its record, in the middle of a drain."""
    real = delivery_store_module.insert_attempt
    failed = threading.Event()

    def insert_attempt(connection, **values):  # type: ignore[no-untyped-def]
        if values["outcome"] == "delivered" and not failed.is_set():
            cid = connection.execute(text("SELECT control_id FROM outbox_message WHERE id = :id"),
                                     {"id": values["message_id"]}).scalar()
            if cid == "M3":
                failed.set()
                raise OperationalError("INSERT", {}, Exception("the database went away mid-record"))
        real(connection, **values)

    monkeypatch.setattr(delivery_store_module, "insert_attempt", insert_attempt)
    sender = RecordingSender()
    expected = [f"M{i}" for i in range(1, 7)]
    enqueue_mllp(engine, expected)
    stop = DeliveryWorker(engine, lambda destination: sender, settings=FAST).run_in_thread()
    try:
        wait_until(lambda: _pending_count(engine) == 0, "all delivered")
    finally:
        stop()
    assert failed.is_set()
    assert sender.sent == ["M1", "M2", "M3", "M3", "M4", "M5", "M6"]  # resent, same control id, in order
    m3 = next(m for m in messages(engine) if m.control_id == "M3")
    assert m3.state == MessageState.delivered and m3.attempts == 1  # the lost record left no trace
    assert [a.outcome for a in attempts(engine, m3.id or 0)] == ["delivered"]


def test_deliver_head_reads_the_head_again_each_time(engine: Engine) -> None:
    """An operator's skip between two steps is seen at once: the skipped message is never sent."""
    from gateway.delivery.outbox import skip

    sender = RecordingSender()
    enqueue_mllp(engine, ["M1", "M2", "M3"])
    worker = DeliveryWorker(engine, lambda destination: sender, settings=SLOW_POLL)
    assert asyncio.run(worker.deliver_head("site-a/mllp")) is True
    with Session(engine) as session:
        m2 = next(m for m in messages(engine) if m.control_id == "M2")
        skip(session, m2.id or 0, reason="sent by hand", now=_now())
    assert asyncio.run(worker.deliver_head("site-a/mllp")) is True
    assert asyncio.run(worker.deliver_head("site-a/mllp")) is False  # empty: the lease is given back
    assert sender.sent == ["M1", "M3"]


@pytest.mark.postgres
def test_postgresql_listen_hears_a_commit_of_any_connection(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    heard: queue.Queue[frozenset[str] | None] = queue.Queue()
    listener = PgListener(engine, heard.put).start()
    try:
        assert listener.listening.wait(PROMPT_S)
        assert heard.get(timeout=PROMPT_S) is None  # on (re)connecting: check everything once
        enqueue_mllp(engine, ["M1"], destination="site-b/mllp")
        assert heard.get(timeout=PROMPT_S) == frozenset({"site-b/mllp"})
    finally:
        listener.stop()


@pytest.mark.postgres
def test_a_standalone_worker_on_postgresql_is_woken_by_notify(engine: Engine, tmp_path: Path) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("a standalone worker on SQLite polls")
    url = engine.url.render_as_string(hide_password=False)
    peers = PeerLoop()
    process = None
    try:
        peer = Peer(peers).start()
        config = write_config(tmp_path, url, {"site-a": peer.port})
        enqueue_mllp(engine, ["FIRST"])
        process = start_worker_process(config, tmp_path / "worker.log", lease_seconds=5.0,
                                       poll_interval_s=30.0)
        wait_until(lambda: _pending_count(engine) == 0, "FIRST delivered by the first poll", timeout_s=30)
        enqueue_mllp(engine, ["SECOND"])  # the worker sleeps for 30 s: NOTIFY must wake it
        wait_until(lambda: _pending_count(engine) == 0, "SECOND delivered", timeout_s=PROMPT_S)
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)
        peers.close()
    assert peer.received == ["FIRST", "SECOND"]
