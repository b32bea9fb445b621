"""Memory stays bounded with a long backlog: the worker reads queue heads, never the queue.

Measured as rows fetched from the driver (a counting sqlite3 cursor), not as time or bytes: with
20,000 messages queued, no statement the worker (or a metrics scrape) runs fetches more than a few
rows, and the rows fetched per delivery stay constant.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from adapters.delivery_result import DeliveryOutcome
from gateway.delivery.outbox import MessageState, OutboxMessage
from gateway.delivery.worker import DeliveryWorker
from gateway.metrics import GatewayMetrics
from gateway.store.db import make_engine, write_session
from tests.integration.test_delivery_support import FAST, enqueue_mllp, er7, wait_until


class _Stats:
    max_rows_one_statement = 0
    total_rows = 0

    @classmethod
    def reset(cls) -> None:
        cls.max_rows_one_statement = cls.total_rows = 0


class CountingCursor(sqlite3.Cursor):
    def _count(self, n: int) -> None:
        self.rows = getattr(self, "rows", 0) + n
        _Stats.total_rows += n
        _Stats.max_rows_one_statement = max(_Stats.max_rows_one_statement, self.rows)

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        self.rows = 0
        return super().execute(*args, **kwargs)

    def fetchone(self) -> Any:
        row = super().fetchone()
        self._count(row is not None)
        return row

    def fetchmany(self, *args: Any, **kwargs: Any) -> list[Any]:
        rows = super().fetchmany(*args, **kwargs)
        self._count(len(rows))
        return rows

    def fetchall(self) -> list[Any]:
        rows = super().fetchall()
        self._count(len(rows))
        return rows


class CountingConnection(sqlite3.Connection):
    def cursor(self, factory: Any = CountingCursor) -> Any:  # type: ignore[override]
        return super().cursor(factory)


class CountingSender:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, message: OutboxMessage) -> DeliveryOutcome:
        self.sent.append(message.control_id)
        return DeliveryOutcome("delivered", ack_code="AA", latency_ms=0.1)


def test_a_long_backlog_is_read_one_head_at_a_time(_sqlite_template: Path, tmp_path: Path) -> None:
    path = tmp_path / "backlog.db"
    shutil.copyfile(_sqlite_template, path)
    engine = make_engine(f"sqlite:///{path}", creator=lambda: sqlite3.connect(
        path, factory=CountingConnection, check_same_thread=False, timeout=30))
    backlog = 20_000
    enqueue_mllp(engine, ["FIRST"])
    with write_session(engine) as session:  # the bulk of it in one statement: building it is not the test
        session.execute(insert(OutboxMessage), [
            {"destination": "site-a/mllp", "channel": "mllp", "site_id": "site-a",
             "manufacturer_id": "acme-bio", "order_id": "ORD-1", "event_id": f"EV-{i}",
             "control_id": f"M{i:05d}", "message_type": "OML^O21",
             "content_type": "application/hl7-v2", "payload": er7(f"M{i:05d}"), "state": "pending",
             "attempts": 0, "next_attempt_at": messages_now(), "created_at": messages_now()}
            for i in range(backlog)])
    sender = CountingSender()
    worker = DeliveryWorker(engine, lambda destination: sender, settings=FAST)
    _Stats.reset()
    stop = worker.run_in_thread()
    try:
        wait_until(lambda: len(sender.sent) >= 200, "200 deliveries")
    finally:
        stop()
    delivered = len(sender.sent)
    assert sender.sent[:3] == ["FIRST", "M00000", "M00001"]
    assert sender.sent == ["FIRST", *[f"M{i:05d}" for i in range(delivered - 1)]]  # FIFO from the head
    assert _Stats.total_rows >= delivered  # the counter sees at least each head it read
    assert _Stats.max_rows_one_statement <= 2  # one head, one lease, one destination name at a time
    assert _Stats.total_rows <= 8 * delivered  # constant per delivery, whatever the backlog
    _Stats.reset()
    text = GatewayMetrics(engine).render().decode()
    assert 'cgt_outbox_messages{destination="site-a/mllp",state="pending"}' in text
    assert _Stats.max_rows_one_statement <= 4  # a scrape reads aggregates, not messages
    with engine.connect() as conn:
        pending = conn.exec_driver_sql("SELECT count(*) FROM outbox_message WHERE state = 'pending'").scalar()
        first = conn.exec_driver_sql("SELECT state FROM outbox_message WHERE control_id = 'FIRST'").scalar()
    assert pending == backlog + 1 - delivered and first == MessageState.delivered
    engine.dispose()


def messages_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
