"""The alert scheduler: an async loop inside ``serve`` and ``worker`` that evaluates every order in
progress and every certification each ``alerts_interval_s`` (time-driven conditions: overdue
shipments, approaching expiries, expiring certifications).

Its clock is injected (``now``), and a pass (:meth:`AlertScheduler.tick`) is plain synchronous work
that tests call directly.  It keeps no state of its own: what was raised is in ``milestone_alert``,
whose unique constraint makes a pass after a restart, or two schedulers at once, raise nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from gateway.alerts.evaluate import PassResult, evaluate_all
from gateway.context import Clock, Context

__all__ = ["AlertScheduler"]

log = logging.getLogger("cgt_gateway.alerts")


class AlertScheduler:
    def __init__(
        self, context: Context, *, now: Clock | None = None, interval_s: float | None = None
    ) -> None:
        self.context = context
        self.now = now or context.now
        self.interval_s = interval_s if interval_s is not None else context.settings.alerts_interval_s
        self.passes = 0

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

    async def run(self, stop: asyncio.Event) -> None:
        """Pass, then wait ``interval_s`` (or until ``stop``); a database error waits for the next pass."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.tick)
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
