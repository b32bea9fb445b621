"""The heartbeat scheduler: an asyncio task inside ``serve`` and ``worker`` that queues a heartbeat
notification for every ``active`` subscription whose period has run out.

Each pass (:meth:`HeartbeatScheduler.tick`, one transaction, at most ``batch`` subscriptions) moves a
due subscription's ``next_heartbeat_at`` one period on with a guarded ``UPDATE`` (only if it still
holds the value read), so two schedulers (serve and a standalone worker) never queue the same
heartbeat twice.  A subscription whose queue still holds a notification gets no heartbeat that period
(the pending notification is the sign of life, and heartbeats never pile up behind an outage).
The clock is injectable for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from gateway.config import Settings
from gateway.delivery.destinations import subscription_destination
from gateway.delivery.outbox import has_pending
from gateway.store.db import write_session
from gateway.store.subscription_tables import SUBSCRIPTIONS
from gateway.subscriptions import notify

__all__ = ["HeartbeatScheduler"]

log = logging.getLogger("cgt_gateway.subscriptions")
_S = SUBSCRIPTIONS


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class HeartbeatScheduler:
    engine: Engine
    settings: Settings
    clock: Callable[[], datetime] = _utcnow
    batch: int = 100

    def tick(self) -> int:
        """Queue the heartbeats due now; returns how many were queued."""
        now = self.clock()
        queued = 0
        due_now = sa.select(_S.c.id).where(_S.c.status == "active", _S.c.next_heartbeat_at <= now).limit(1)
        with self.engine.connect() as conn:  # a read first: no write lock taken when nothing is due
            if conn.execute(due_now).first() is None:
                return 0
        with write_session(self.engine) as session:
            conn = session.connection()
            due = conn.execute(
                sa.select(_S)
                .where(_S.c.status == "active", _S.c.heartbeat_s.is_not(None), _S.c.next_heartbeat_at <= now)
                .order_by(_S.c.next_heartbeat_at)
                .limit(self.batch)
            ).all()
            for row in due:
                following = now + timedelta(seconds=int(row.heartbeat_s))
                moved = conn.execute(
                    _S.update()
                    .where(_S.c.id == row.id, _S.c.next_heartbeat_at == row.next_heartbeat_at)
                    .values(next_heartbeat_at=following)
                )
                if not moved.rowcount or has_pending(session, subscription_destination(row.id)):
                    continue
                # the heartbeat's number (its Bundle id) is its time: unique across restarts and schedulers
                notify.heartbeat(session, row, self.settings.base_url(), now, int(now.timestamp() * 1000))
                queued += 1
        return queued

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every ``subscription_heartbeat_poll_s`` until ``stop`` is set (database errors: retried)."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.tick)
            except SQLAlchemyError as exc:
                log.warning("heartbeat pass failed", extra={"error": type(exc).__name__})
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.subscription_heartbeat_poll_s)

    def run_in_thread(self) -> Callable[[], None]:
        """Run on an event loop of its own in a daemon thread; returns the stop function."""
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        thread = threading.Thread(
            target=lambda: loop.run_until_complete(self.run(stop)),
            name="cgt-subscription-heartbeat",
            daemon=True,
        )
        thread.start()

        def stop_scheduler() -> None:
            loop.call_soon_threadsafe(stop.set)
            thread.join(timeout=10)
            if not thread.is_alive():
                loop.close()

        return stop_scheduler
