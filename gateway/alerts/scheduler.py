"""The alert scheduler: an async loop inside ``serve`` and ``worker`` that evaluates every order in
progress and every certification each ``alerts_interval_s`` (time-driven conditions: overdue
shipments, approaching expiries, expiring certifications).

Its clock is injected (``now``), and a pass (:meth:`AlertScheduler.tick`) is plain synchronous work
that tests call directly.  It keeps no state of its own: what was raised is in ``milestone_alert``,
whose unique constraint makes a pass after a restart, or two schedulers at once, raise nothing twice.

Every ``serve`` process and every ``worker`` runs a scheduler.  On PostgreSQL one pass runs at a time
across all of them (:meth:`AlertScheduler.tick_if_free`: a session advisory lock, tried, never waited
for; released at the pass's end or when its connection dies), so N processes do not multiply the
passes' database load; the others skip that turn.  SQLite has one process, so no lock is needed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from gateway.alerts.evaluate import PassResult, evaluate_all
from gateway.context import Clock, Context

__all__ = ["AlertScheduler"]

log = logging.getLogger("cgt_gateway.alerts")

# the advisory lock key of the alert pass (any 64-bit constant of ours: "cgt-alerts" in hex, truncated)
PASS_LOCK_KEY = 0x6367742D616C65
_TRY_LOCK = sa.text("SELECT pg_try_advisory_lock(:key)")
_UNLOCK = sa.text("SELECT pg_advisory_unlock(:key)")


class AlertScheduler:
    def __init__(
        self, context: Context, *, now: Clock | None = None, interval_s: float | None = None
    ) -> None:
        self.context = context
        self.now = now or context.now
        self.interval_s = interval_s if interval_s is not None else context.settings.alerts_interval_s
        self.passes = 0
        self.skipped = 0  # turns left to another process's pass (PostgreSQL)

    def tick(self) -> PassResult:
        """One pass at the injected clock's time."""
        result = evaluate_all(self.context, self.now())
        self.passes += 1
        if result.changed:
            log.info(
                "alert pass",
                extra={
                    "orders": result.orders,
                    "certifications": result.certifications,
                    "changed": len(result.changed),
                },
            )
        return result

    def tick_if_free(self) -> PassResult | None:
        """A pass unless another process's pass is running (PostgreSQL): then None, and nothing done."""
        engine = self.context.engine
        if engine.dialect.name != "postgresql":
            return self.tick()
        with engine.connect() as conn:
            if not conn.execute(_TRY_LOCK, {"key": PASS_LOCK_KEY}).scalar_one():
                conn.rollback()
                self.skipped += 1
                return None
            conn.commit()  # the lock is the session's: it outlives this transaction
            try:
                return self.tick()
            finally:
                conn.execute(_UNLOCK, {"key": PASS_LOCK_KEY})
                conn.commit()

    async def run(self, stop: asyncio.Event) -> None:
        """Pass, then wait ``interval_s`` (or until ``stop``); a database error waits for the next pass."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.tick_if_free)
            except SQLAlchemyError as exc:
                log.warning("alert pass failed: %s", type(exc).__name__)
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.interval_s)
            except TimeoutError:
                pass

    def run_in_thread(self) -> Callable[[], None]:
        """Run on its own event loop in a daemon thread; returns a stop function."""
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()

        thread = threading.Thread(
            target=lambda: loop.run_until_complete(self.run(stop)), name="cgt-alert-scheduler", daemon=True
        )
        thread.start()

        def stop_scheduler() -> None:
            loop.call_soon_threadsafe(stop.set)
            thread.join(timeout=30)
            if not thread.is_alive():
                loop.close()

        return stop_scheduler
