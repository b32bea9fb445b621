"""The delivery worker: drains each destination's outbox queue in FIFO order.

One worker at a time holds a destination (a lease row that expires if the worker dies), so order
holds and nothing is sent twice concurrently, on SQLite and on PostgreSQL with several workers.
The queue's head is the only row read per destination, so memory stays flat however long the
backlog.  A database error never kills the worker: it waits and resumes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import Engine, delete, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session

from adapters.delivery_result import DeliveryOutcome
from gateway.outbox import (
    DeliveryAlert,
    DeliveryAttempt,
    DestinationLease,
    MessageState,
    OutboxMessage,
    head_of_queue,
    pending_destinations,
)

__all__ = ["Sender", "WorkerSettings", "DeliveryWorker", "acquire_lease", "release_lease", "backoff_delay"]

log = logging.getLogger("cgt_gateway.delivery")


class Sender(Protocol):
    """Sends one outbox message to its destination and says what happened; never raises."""

    async def send(self, message: OutboxMessage) -> DeliveryOutcome: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class WorkerSettings:
    lease_seconds: float = 30.0
    poll_interval_s: float = 0.2
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0
    db_error_pause_s: float = 1.0
    max_attempts_before_alert: int = 10


def backoff_delay(attempts: int, settings: WorkerSettings, retry_after_s: float | None = None) -> float:
    """Exponential backoff capped at ``backoff_max_s``; a peer's Retry-After wins when longer."""
    delay = min(settings.backoff_max_s, settings.backoff_base_s * (2 ** max(0, attempts - 1)))
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, settings.backoff_max_s))
    return delay


def _utcnow() -> datetime:
    return datetime.now(UTC)


def acquire_lease(session: Session, destination: str, owner: str, now: datetime, seconds: float) -> bool:
    """Take or renew the lease on ``destination``; False if another live worker holds it."""
    expires = now + timedelta(seconds=seconds)
    result = session.execute(
        update(DestinationLease)
        .where(DestinationLease.destination == destination)  # type: ignore[arg-type]
        .where((DestinationLease.owner == owner) | (DestinationLease.expires_at < now))  # type: ignore[arg-type,operator]
        .values(owner=owner, expires_at=expires))
    if result.rowcount == 1:  # type: ignore[attr-defined]
        session.commit()
        return True
    session.rollback()
    try:
        session.add(DestinationLease(destination=destination, owner=owner, expires_at=expires))
        session.commit()
        return True
    except IntegrityError:
        session.rollback()
        return False


def release_lease(session: Session, destination: str, owner: str) -> None:
    session.execute(delete(DestinationLease).where(DestinationLease.destination == destination,  # type: ignore[arg-type]
                                                   DestinationLease.owner == owner))  # type: ignore[arg-type]
    session.commit()


@dataclass
class DeliveryWorker:
    engine: Engine
    sender_for: Callable[[str], Sender | None]  # destination -> sender (cached by the factory)
    settings: WorkerSettings = WorkerSettings()
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{id(object())}")
    clock: Callable[[], datetime] = _utcnow
    on_outcome: Callable[[OutboxMessage, DeliveryOutcome], None] | None = None
    _stop: asyncio.Event | None = None
    _tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    # ------------------------------------------------------------------ one step

    async def deliver_head(self, destination: str) -> bool:
        """Send the head of ``destination`` if it is due and we hold the lease; True if attempted."""
        now = self.clock()
        with Session(self.engine) as session:
            if not acquire_lease(session, destination, self.worker_id, now, self.settings.lease_seconds):
                return False
            message = head_of_queue(session, destination)
            if message is None:
                release_lease(session, destination, self.worker_id)
                return False
            if _aware(message.next_attempt_at) > now:
                return False
            session.expunge(message)
        sender = self.sender_for(destination)
        if sender is None:
            return False  # destination no longer configured: leave the rows for an operator
        outcome = await sender.send(message)
        self._record(message, outcome)
        if self.on_outcome is not None:
            self.on_outcome(message, outcome)
        return True

    def _record(self, message: OutboxMessage, outcome: DeliveryOutcome) -> None:
        now = self.clock()
        with Session(self.engine) as session:
            attempts = message.attempts + 1
            values: dict[str, object] = {"attempts": attempts, "last_outcome": outcome.status,
                                         "last_detail": outcome.detail}
            if outcome.status == "delivered":
                values.update(state=MessageState.delivered, finished_at=now)
            elif outcome.status == "dead":
                values.update(state=MessageState.dead, finished_at=now)
                session.add(DeliveryAlert(at=now, destination=message.destination, message_id=message.id,
                                          kind="dead-letter", detail=outcome.detail or ""))
            else:  # retry: not delivered; the same message (same control id) goes again later
                delay = backoff_delay(attempts, self.settings, outcome.retry_after_s)
                values.update(next_attempt_at=now + timedelta(seconds=delay))
                if attempts == self.settings.max_attempts_before_alert:
                    session.add(DeliveryAlert(at=now, destination=message.destination, message_id=message.id,
                                              kind="retries-exceeded", detail=outcome.detail or ""))
            if outcome.warning:  # e.g. an ACK whose MSA-2 does not match: an operator should look
                session.add(DeliveryAlert(at=now, destination=message.destination, message_id=message.id,
                                          kind="warning", detail=outcome.warning))
            session.execute(update(OutboxMessage).where(OutboxMessage.id == message.id)  # type: ignore[arg-type]
                            .where(OutboxMessage.state == MessageState.pending)  # type: ignore[arg-type]
                            .values(**values))
            session.add(DeliveryAttempt(message_id=message.id or 0, attempted_at=now, outcome=outcome.status,
                                        ack_code=outcome.ack_code, http_status=outcome.http_status,
                                        latency_ms=outcome.latency_ms, detail=outcome.detail,
                                        worker_id=self.worker_id))
            session.commit()
        log.info("delivery attempt", extra={"destination": message.destination, "message_id": message.id,
                                            "control_id": message.control_id, "outcome": outcome.status,
                                            "ack_code": outcome.ack_code, "http_status": outcome.http_status})

    # ------------------------------------------------------------------ loops

    async def _destination_loop(self, destination: str) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            try:
                attempted = await self.deliver_head(destination)
            except SQLAlchemyError as exc:  # database down or locked: survive and retry
                log.warning("database error in delivery loop", extra={"destination": destination,
                                                                      "error": type(exc).__name__})
                await self._sleep(self.settings.db_error_pause_s)
                continue
            if not attempted:
                if not await self._has_pending(destination):
                    return
                await self._sleep(self.settings.poll_interval_s)

    async def _has_pending(self, destination: str) -> bool:
        try:
            with Session(self.engine) as session:
                return head_of_queue(session, destination) is not None
        except SQLAlchemyError:
            return True

    async def _sleep(self, seconds: float) -> None:
        assert self._stop is not None
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set: one task per destination with pending messages."""
        self._stop = stop or asyncio.Event()
        try:
            while not self._stop.is_set():
                try:
                    with Session(self.engine) as session:
                        destinations = pending_destinations(session)
                except SQLAlchemyError as exc:
                    log.warning("database error listing destinations", extra={"error": type(exc).__name__})
                    await self._sleep(self.settings.db_error_pause_s)
                    continue
                for destination in destinations:
                    task = self._tasks.get(destination)
                    if task is None or task.done():
                        self._tasks[destination] = asyncio.create_task(self._destination_loop(destination))
                await self._sleep(self.settings.poll_interval_s)
        finally:
            for task in self._tasks.values():
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
            self._tasks.clear()

    def run_in_thread(self) -> Callable[[], None]:
        """Start the worker on its own event loop in a daemon thread; returns a stop function."""
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        thread = threading.Thread(target=lambda: loop.run_until_complete(self._run_with(stop)),
                                  name="cgt-delivery-worker", daemon=True)
        thread.start()

        def stop_worker() -> None:
            loop.call_soon_threadsafe(stop.set)
            thread.join(timeout=10)

        return stop_worker

    async def _run_with(self, stop: asyncio.Event) -> None:
        await self.run(stop)


def _aware(value: datetime) -> datetime:
    """SQLite returns naive datetimes: they were stored as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


