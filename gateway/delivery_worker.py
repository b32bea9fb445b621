"""The delivery worker: drains each destination's outbox queue in FIFO order.

One worker at a time holds a destination (a lease row that expires if the worker dies, renewed
while a send is under way), so order holds and nothing is sent twice concurrently, on SQLite and on
PostgreSQL with several workers.  Only the queue's head is read per destination, so memory stays
flat however long the backlog.  A database error never kills the worker: it waits and resumes.
A message is marked only after its attempt: a worker killed mid-send leaves it pending, and the
next worker resends it with the same control id.

Database calls run in a thread (``asyncio.to_thread``) so a slow or locked database never stalls
the MLLP read deadlines of other destinations.  Logs carry ids and outcomes, never payloads or ACK text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, col

from adapters.delivery_result import DeliveryOutcome
from adapters.retry import RetryPolicy
from gateway.outbox import (
    DeliveryAlert,
    DeliveryAttempt,
    DestinationLease,
    MessageState,
    OutboxMessage,
    has_pending,
    head_of_queue,
    pending_destinations,
)

__all__ = ["Sender", "WorkerSettings", "DeliveryWorker", "acquire_lease", "release_lease"]

log = logging.getLogger("cgt_gateway.delivery")


class Sender(Protocol):
    """Sends one outbox message to its destination and says what happened; never raises."""

    async def send(self, message: OutboxMessage) -> DeliveryOutcome: ...


@dataclass(frozen=True)
class WorkerSettings:
    """``lease_seconds`` must exceed the longest single send (connect + read deadlines): the lease
    is also renewed every third of it while a send is under way."""

    lease_seconds: float = 30.0
    poll_interval_s: float = 0.2
    retry: RetryPolicy = RetryPolicy()  # backoff between attempts of one message (the queue waits)
    db_error_pause_s: float = 1.0
    max_attempts_before_alert: int = 10
    stop_grace_s: float = 5.0  # on stop, sends under way may finish and be recorded for this long


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def acquire_lease(session: Session, destination: str, owner: str, now: datetime, seconds: float) -> bool:
    """Take or renew the lease on ``destination``; False if another live worker holds it.

    The conditional UPDATE is atomic on both databases (PostgreSQL re-checks the WHERE clause after
    a concurrent writer commits); a first lease is an INSERT that the primary key lets only one win.
    A lease held by someone else is seen with a SELECT, so the database logs no needless key violations.
    """
    expires = now + timedelta(seconds=seconds)
    result = session.execute(
        update(DestinationLease)
        .where(col(DestinationLease.destination) == destination)
        .where((col(DestinationLease.owner) == owner) | (col(DestinationLease.expires_at) < now))
        .values(owner=owner, expires_at=expires))
    if result.rowcount == 1:  # type: ignore[attr-defined]
        session.commit()
        return True
    exists = session.execute(select(col(DestinationLease.destination))
                             .where(col(DestinationLease.destination) == destination)).first()
    session.rollback()
    if exists is not None:
        return False
    try:
        session.add(DestinationLease(destination=destination, owner=owner, expires_at=expires))
        session.commit()
        return True
    except IntegrityError:  # another worker inserted it first
        session.rollback()
        return False


def release_lease(session: Session, destination: str, owner: str) -> None:
    session.execute(delete(DestinationLease).where(col(DestinationLease.destination) == destination,
                                                   col(DestinationLease.owner) == owner))
    session.commit()


class _LeaseLost(Exception):
    pass


@dataclass
class DeliveryWorker:
    engine: Engine
    sender_for: Callable[[str], Sender | None]  # destination -> sender (cached by the factory)
    settings: WorkerSettings = field(default_factory=WorkerSettings)
    worker_id: str = field(default_factory=_default_worker_id)
    clock: Callable[[], datetime] = _utcnow
    on_outcome: Callable[[OutboxMessage, DeliveryOutcome], None] | None = None
    close_senders: Callable[[], Awaitable[None]] | None = None  # awaited when the worker stops
    alert_after: Callable[[str], int | None] | None = None  # per-destination alert threshold
    # Called in the transaction that dead-letters a message, to enqueue follow-ups (e.g. tell the
    # manufacturer over its webhook that the site refused its order).
    on_dead_letter: Callable[[Session, OutboxMessage, DeliveryOutcome, datetime], None] | None = None
    _stop: asyncio.Event | None = None
    _tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _unconfigured: set[str] = field(default_factory=set)
    _leases: dict[str, datetime] = field(default_factory=dict)  # our leases' expiry, as we last set them
    _held_elsewhere: set[str] = field(default_factory=set)  # another worker holds these: poll them less

    # ------------------------------------------------------------------ one step

    async def deliver_head(self, destination: str) -> bool:
        """Send the head of ``destination`` if it is due and we hold the lease; True if attempted."""
        sender = self.sender_for(destination)
        if sender is None:
            return False  # destination no longer configured: leave the rows for an operator
        message = await asyncio.to_thread(self._claim_head, destination)
        if message is None:
            return False
        try:
            outcome = await self._send_holding_lease(destination, sender, message)
        except _LeaseLost:
            log.warning("lease lost during a send; another worker will resend",
                        extra={"destination": destination, "message_id": message.id,
                               "control_id": message.control_id})
            return False
        except Exception as exc:  # a sender must not raise; if one does, it is a retry like any other
            outcome = DeliveryOutcome("retry", detail=f"sender failed: {type(exc).__name__}")
            log.error("sender raised", extra={"destination": destination, "message_id": message.id,
                                              "error": type(exc).__name__})
        await asyncio.to_thread(self._record, message, outcome)
        if self.on_outcome is not None:
            self.on_outcome(message, outcome)
        return True

    def _claim_head(self, destination: str) -> OutboxMessage | None:
        now = self.clock()
        lease = timedelta(seconds=self.settings.lease_seconds)
        with Session(self.engine, expire_on_commit=False) as session:
            held_until = self._leases.get(destination)
            if held_until is None or held_until - now < lease / 2:  # renew once half of it has run
                if not acquire_lease(session, destination, self.worker_id, now, self.settings.lease_seconds):
                    self._leases.pop(destination, None)
                    self._held_elsewhere.add(destination)
                    return None
                self._held_elsewhere.discard(destination)
                self._leases[destination] = now + lease
            message = head_of_queue(session, destination)
            if message is None:
                self._leases.pop(destination, None)
                release_lease(session, destination, self.worker_id)
                return None
            if _aware(message.next_attempt_at) > now:
                return None  # keep the lease: the queue waits for its head's retry
            session.expunge(message)
            return message

    async def _send_holding_lease(self, destination: str, sender: Sender,
                                  message: OutboxMessage) -> DeliveryOutcome:
        send = asyncio.ensure_future(sender.send(message))
        every = self.settings.lease_seconds / 3
        while True:
            done, _ = await asyncio.wait({send}, timeout=every)
            if done:
                return send.result()
            try:
                held = await asyncio.to_thread(self._renew, destination)
            except SQLAlchemyError:
                held = True  # cannot tell; the lease still runs for two thirds of its time
            if not held:
                send.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await send
                raise _LeaseLost(destination)

    def _renew(self, destination: str) -> bool:
        now = self.clock()
        with Session(self.engine) as session:
            held = acquire_lease(session, destination, self.worker_id, now, self.settings.lease_seconds)
        if held:
            self._leases[destination] = now + timedelta(seconds=self.settings.lease_seconds)
        else:
            self._leases.pop(destination, None)
        return held

    def _record(self, message: OutboxMessage, outcome: DeliveryOutcome) -> None:
        now = self.clock()
        destination = message.destination
        with Session(self.engine) as session:
            attempts = message.attempts + 1
            values: dict[str, object] = {"attempts": attempts, "last_outcome": outcome.status,
                                         "last_detail": outcome.detail}
            if outcome.status == "delivered":
                values.update(state=MessageState.delivered, finished_at=now)
            elif outcome.status == "dead":
                values.update(state=MessageState.dead, finished_at=now)
                session.add(DeliveryAlert(at=now, destination=destination, message_id=message.id,
                                          kind="dead-letter", detail=outcome.detail or ""))
                if self.on_dead_letter is not None:
                    self.on_dead_letter(session, message, outcome, now)
            else:  # retry: not delivered; the same message (same control id) goes again later
                delay = self.settings.retry.delay(attempts, outcome.retry_after_s)
                values.update(next_attempt_at=now + timedelta(seconds=delay))
                threshold = self.alert_after(destination) if self.alert_after is not None else None
                if attempts == (threshold or self.settings.max_attempts_before_alert):
                    session.add(DeliveryAlert(at=now, destination=destination, message_id=message.id,
                                              kind="retries-exceeded", detail=outcome.detail or ""))
            if outcome.warning:  # e.g. an ACK whose MSA-2 does not match: an operator should look
                session.add(DeliveryAlert(at=now, destination=destination, message_id=message.id,
                                          kind="warning", detail=outcome.warning))
            session.execute(update(OutboxMessage).where(col(OutboxMessage.id) == message.id)
                            .where(col(OutboxMessage.state) == MessageState.pending)
                            .values(**values))
            session.add(DeliveryAttempt(message_id=message.id or 0, attempted_at=now, outcome=outcome.status,
                                        ack_code=outcome.ack_code, http_status=outcome.http_status,
                                        latency_ms=outcome.latency_ms, detail=outcome.detail,
                                        worker_id=self.worker_id))
            session.commit()
        log.info("delivery attempt", extra={"destination": destination, "message_id": message.id,
                                            "control_id": message.control_id, "outcome": outcome.status,
                                            "ack_code": outcome.ack_code, "http_status": outcome.http_status,
                                            "attempt": attempts, "warning": outcome.warning is not None})

    # ------------------------------------------------------------------ loops

    async def _destination_loop(self, destination: str) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            try:
                attempted = await self.deliver_head(destination)
                if attempted:
                    continue
                if not await asyncio.to_thread(self._has_pending, destination):
                    return
            except SQLAlchemyError as exc:  # database down or locked: survive and retry
                log.warning("database error in delivery loop", extra={"destination": destination,
                                                                      "error": type(exc).__name__})
                await self._sleep(self.settings.db_error_pause_s)
                continue
            pause = self.settings.poll_interval_s
            if destination in self._held_elsewhere:  # it is being delivered; check back now and then
                pause = max(pause, self.settings.lease_seconds / 4)
            await self._sleep(pause)

    def _has_pending(self, destination: str) -> bool:
        with Session(self.engine) as session:
            return has_pending(session, destination)

    def _pending_destinations(self) -> list[str]:
        with Session(self.engine) as session:
            return pending_destinations(session)

    async def _sleep(self, seconds: float) -> None:
        assert self._stop is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set: one task per destination with pending messages."""
        self._stop = stop or asyncio.Event()
        log.info("delivery worker started", extra={"worker_id": self.worker_id})
        try:
            while not self._stop.is_set():
                try:
                    destinations = await asyncio.to_thread(self._pending_destinations)
                except SQLAlchemyError as exc:
                    log.warning("database error listing destinations", extra={"error": type(exc).__name__})
                    await self._sleep(self.settings.db_error_pause_s)
                    continue
                for destination in destinations:
                    task = self._tasks.get(destination)
                    if task is not None and not task.done():
                        continue
                    failure = task.exception() if task is not None and not task.cancelled() else None
                    if failure is not None:
                        log.error("destination loop failed; restarting it",
                                  extra={"destination": destination, "error": type(failure).__name__})
                    if self.sender_for(destination) is None:
                        if destination not in self._unconfigured:
                            self._unconfigured.add(destination)
                            log.warning("messages queued for a destination with no endpoint configured",
                                        extra={"destination": destination})
                        continue
                    self._tasks[destination] = asyncio.create_task(self._destination_loop(destination))
                await self._sleep(self.settings.poll_interval_s)
        finally:
            tasks = list(self._tasks.values())
            if tasks:  # the loops end after their current delivery; cut short only what overruns
                _, overrun = await asyncio.wait(tasks, timeout=self.settings.stop_grace_s)
                for task in overrun:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks.clear()
            await asyncio.to_thread(self._release_all)
            if self.close_senders is not None:
                await self.close_senders()
            log.info("delivery worker stopped", extra={"worker_id": self.worker_id})

    def _release_all(self) -> None:
        """Give our leases back on a clean stop, so another worker need not wait for them to expire."""
        self._leases.clear()
        try:
            with Session(self.engine) as session:
                session.execute(delete(DestinationLease).where(
                    col(DestinationLease.owner) == self.worker_id))
                session.commit()
        except SQLAlchemyError:
            pass  # they expire on their own

    def run_in_thread(self) -> Callable[[], None]:
        """Start the worker on its own event loop in a daemon thread; returns a stop function."""
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        started = threading.Event()

        async def main() -> None:
            started.set()
            await self.run(stop)

        thread = threading.Thread(target=lambda: loop.run_until_complete(main()),
                                  name="cgt-delivery-worker", daemon=True)
        thread.start()
        started.wait(timeout=10)

        def stop_worker() -> None:
            loop.call_soon_threadsafe(stop.set)
            thread.join(timeout=30)
            if not thread.is_alive():
                loop.close()

        return stop_worker


def _aware(value: datetime) -> datetime:
    """SQLite returns naive datetimes: they were stored as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
