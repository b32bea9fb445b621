"""The delivery worker: drains each destination's outbox queue in FIFO order.

One worker at a time holds a destination (a lease row that expires if the worker dies, renewed
while a send is under way), so order holds and nothing is sent twice concurrently, on SQLite and on
PostgreSQL with several workers.  Only the queue's head is read per destination, so memory stays
flat however long the backlog.  A database error never kills the worker: it waits and resumes.
A message is marked only after its attempt: a worker killed mid-send leaves it pending, and the
next worker resends it with the same control id.

Per message the worker sends the head, then, in one transaction and one thread hop, records the
attempt and the new state and reads the next head (one row): statements built once, in SQLAlchemy
Core, on one connection per destination (:mod:`gateway.outbox_queue`), no ORM unit of work.  Each
message is read when it is the head, so an operator's replay or skip is seen at once and memory
does not grow with the backlog.  The lease is renewed once half of it has run, not per message.

A commit that enqueues rows wakes the worker (:mod:`gateway.outbox_wakeup`): in-process at once,
from another process through PostgreSQL ``LISTEN/NOTIFY``; polling stays as the fallback (and is
all a standalone worker on SQLite has).

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
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import Connection, Engine, delete, insert, select, update
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
    pending_destinations,
)
from gateway.outbox_queue import give_back_lease, insert_attempt, mark_outcome, read_head, take_lease
from gateway.outbox_wakeup import PgListener, subscribe

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
    listen: bool = True  # on PostgreSQL, LISTEN for rows other processes enqueue (else poll only)


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
class _Queue:
    """The connection a destination's loop reuses from one message to the next."""

    connection: Connection | None = None

    def close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()


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
    _queues: dict[str, _Queue] = field(default_factory=dict)
    _wake: asyncio.Event | None = None  # set when rows were enqueued (see _on_wake)
    _woken: set[str] | None = field(default_factory=set)  # destinations to start; None: look them up
    _nudges: dict[str, asyncio.Event] = field(default_factory=dict)  # per running destination loop

    # ------------------------------------------------------------------ one step

    async def deliver_head(self, destination: str) -> bool:
        """Send the head of ``destination`` if it is due and we hold the lease; True if attempted."""
        sender = self.sender_for(destination)
        if sender is None:
            return False  # destination no longer configured: leave the rows for an operator
        message = await asyncio.to_thread(self._claim_head, destination)
        if message is None:
            return False
        attempted, _ = await self._attempt(destination, sender, message, claim_next=False)
        return attempted

    async def _drain(self, destination: str) -> bool:
        """Deliver the queue's heads one after the other while they are due; True if any was attempted."""
        sender = self.sender_for(destination)
        if sender is None:
            return False
        message = await asyncio.to_thread(self._claim_head, destination, True)
        attempted = False
        while message is not None and self._stop is not None and not self._stop.is_set():
            done, message = await self._attempt(destination, sender, message, claim_next=True)
            attempted = attempted or done
        return attempted

    async def _attempt(self, destination: str, sender: Sender, message: OutboxMessage,
                       *, claim_next: bool) -> tuple[bool, OutboxMessage | None]:
        """Send ``message`` and record the outcome; with ``claim_next``, also the next head (or None)."""
        try:
            outcome = await self._send_holding_lease(destination, sender, message)
        except _LeaseLost:
            log.warning("lease lost during a send; another worker will resend",
                        extra={"destination": destination, "message_id": message.id,
                               "control_id": message.control_id})
            return False, None
        except Exception as exc:  # a sender must not raise; if one does, it is a retry like any other
            outcome = DeliveryOutcome("retry", detail=f"sender failed: {type(exc).__name__}")
            log.error("sender raised", extra={"destination": destination, "message_id": message.id,
                                              "error": type(exc).__name__})
        following = await asyncio.to_thread(self._record, message, outcome, claim_next)
        if self.on_outcome is not None:
            self.on_outcome(message, outcome)
        return True, following

    # ------------------------------------------------------------------ database (in a thread)

    def _queue(self, destination: str) -> _Queue:
        queue = self._queues.get(destination)
        if queue is None:
            queue = self._queues[destination] = _Queue()
        return queue

    @contextlib.contextmanager
    def _connection(self, destination: str, reuse: bool) -> Iterator[Connection]:
        """The destination loop's own connection (``reuse``), or one for this call; dropped on error."""
        queue = self._queue(destination)
        if not reuse:
            with self.engine.connect() as connection:
                yield connection
            return
        if queue.connection is None:
            queue.connection = self.engine.connect()
        try:
            yield queue.connection
        except BaseException:
            queue.close()
            raise

    def _lease_fresh(self, destination: str, now: datetime) -> bool:
        """True if we hold the lease on ``destination`` and less than half of it has run."""
        held_until = self._leases.get(destination)
        half = timedelta(seconds=self.settings.lease_seconds) / 2
        return held_until is not None and held_until - now >= half

    def _lease_held(self, connection: Connection, destination: str, now: datetime) -> bool:
        """True if our lease on ``destination`` runs long enough; else take or renew it, in the
        connection's transaction (committed by the caller).  Renewed once half of it has run."""
        if self._lease_fresh(destination, now):
            return True
        lease = timedelta(seconds=self.settings.lease_seconds)
        if not take_lease(connection, destination, self.worker_id, now, self.settings.lease_seconds):
            self._leases.pop(destination, None)
            self._held_elsewhere.add(destination)
            return False
        self._held_elsewhere.discard(destination)
        self._leases[destination] = now + lease
        return True

    def _claim_head(self, destination: str, reuse: bool = False) -> OutboxMessage | None:
        """The head of ``destination`` if it is due and our lease is held (taken here if need be)."""
        now = self.clock()
        with self._connection(destination, reuse) as connection:
            try:
                if not self._lease_held(connection, destination, now):
                    return None
                message = self._head(connection, destination, now)
                connection.commit()  # the lease, if it was taken or renewed; else ends the read
                return message
            except BaseException:
                self._leases.pop(destination, None)  # the lease was not written: take it next time
                raise
            finally:
                connection.rollback()

    def _head(self, connection: Connection, destination: str, now: datetime) -> OutboxMessage | None:
        """The queue's head if it is due (our lease is held); gives the lease back if the queue is empty."""
        message = read_head(connection, destination)
        if message is None:
            self._leases.pop(destination, None)
            connection.rollback()  # in SQLite, a write after a read in one transaction may fail at once
            give_back_lease(connection, destination, self.worker_id)
            return None
        if _aware(message.next_attempt_at) > now:
            return None  # keep the lease: the queue waits for its head's retry
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

    def _record(self, message: OutboxMessage, outcome: DeliveryOutcome,
                claim_next: bool = False) -> OutboxMessage | None:
        """Record the attempt and the message's new state (one transaction); then the next due head."""
        now = self.clock()
        destination = message.destination
        attempts = message.attempts + 1
        following: OutboxMessage | None = None
        fused = False  # the next head was read in the record's transaction
        if outcome.status == "dead":  # rare: the ORM session lets on_dead_letter enqueue follow-ups
            self._record_dead(message, outcome, now)
        else:
            values: dict[str, object] = {"attempts": attempts, "last_outcome": outcome.status,
                                         "last_detail": outcome.detail}
            alerts: list[tuple[str, str]] = []
            if outcome.status == "delivered":
                values.update(state=MessageState.delivered.value, finished_at=now)
            else:  # retry: not delivered; the same message (same control id) goes again later
                delay = self.settings.retry.delay(attempts, outcome.retry_after_s)
                values.update(next_attempt_at=now + timedelta(seconds=delay))
                threshold = self.alert_after(destination) if self.alert_after is not None else None
                if attempts == (threshold or self.settings.max_attempts_before_alert):
                    alerts.append(("retries-exceeded", outcome.detail or ""))
            if outcome.warning:  # e.g. an ACK whose MSA-2 does not match: an operator should look
                alerts.append(("warning", outcome.warning))
            status = "delivered" if outcome.status == "delivered" else "retry"
            fused = claim_next and self._lease_fresh(destination, now)
            with self._connection(destination, claim_next) as connection:
                mark_outcome(connection, message.id or 0, status, values)
                insert_attempt(connection, message_id=message.id or 0, attempted_at=now,
                               outcome=outcome.status, ack_code=outcome.ack_code,
                               http_status=outcome.http_status, latency_ms=outcome.latency_ms,
                               detail=outcome.detail, worker_id=self.worker_id)
                for kind, detail in alerts:
                    connection.execute(insert(DeliveryAlert), {
                        "at": now, "destination": destination, "message_id": message.id,
                        "kind": kind, "detail": detail})
                if fused:  # the next head, read in this transaction (it sees this message's new state)
                    following = read_head(connection, destination)
                connection.commit()
        log.info("delivery attempt", extra={"destination": destination, "message_id": message.id,
                                            "control_id": message.control_id, "outcome": outcome.status,
                                            "ack_code": outcome.ack_code, "http_status": outcome.http_status,
                                            "attempt": attempts, "warning": outcome.warning is not None})
        if fused and following is not None:  # else the queue looks empty: see below, with the lease
            return following if _aware(following.next_attempt_at) <= now else None
        return self._claim_head(destination, True) if claim_next else None

    def _record_dead(self, message: OutboxMessage, outcome: DeliveryOutcome, now: datetime) -> None:
        destination = message.destination
        with Session(self.engine) as session:
            values: dict[str, object] = {"attempts": message.attempts + 1, "last_outcome": outcome.status,
                                         "last_detail": outcome.detail, "state": MessageState.dead,
                                         "finished_at": now}
            session.add(DeliveryAlert(at=now, destination=destination, message_id=message.id,
                                      kind="dead-letter", detail=outcome.detail or ""))
            if self.on_dead_letter is not None:
                self.on_dead_letter(session, message, outcome, now)
            if outcome.warning:
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

    # ------------------------------------------------------------------ loops

    async def _destination_loop(self, destination: str) -> None:
        assert self._stop is not None
        nudge = self._nudges.setdefault(destination, asyncio.Event())
        try:
            while not self._stop.is_set():
                nudge.clear()  # rows committed from here on are seen by the reads below, or nudge again
                try:
                    if await self._drain(destination):
                        continue
                    if not await asyncio.to_thread(self._has_pending, destination):
                        if nudge.is_set():
                            continue
                        return  # no await from the check to here: a later wake-up starts a new loop
                except SQLAlchemyError as exc:  # database down or locked: survive and retry
                    log.warning("database error in delivery loop", extra={"destination": destination,
                                                                          "error": type(exc).__name__})
                    self._queue(destination).close()
                    await self._sleep(self.settings.db_error_pause_s)
                    continue
                pause = self.settings.poll_interval_s
                if destination in self._held_elsewhere:  # it is being delivered; check back now and then
                    pause = max(pause, self.settings.lease_seconds / 4)
                await self._sleep(pause, nudge)  # rows committed meanwhile cut the pause short
        finally:
            queue = self._queues.pop(destination, None)
            if queue is not None:
                await asyncio.to_thread(queue.close)

    def _has_pending(self, destination: str) -> bool:
        with Session(self.engine) as session:
            return has_pending(session, destination)

    def _pending_destinations(self) -> list[str]:
        with Session(self.engine) as session:
            return pending_destinations(session)

    async def _sleep(self, seconds: float, wake: asyncio.Event | None = None) -> None:
        assert self._stop is not None
        waits = [asyncio.ensure_future(self._stop.wait())]
        if wake is not None:
            waits.append(asyncio.ensure_future(wake.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    def _on_wake(self, destinations: frozenset[str] | None) -> None:
        """On the worker's loop: rows were committed for ``destinations`` (None: for some destination)."""
        if self._wake is None:
            return
        for destination in destinations if destinations is not None else list(self._nudges):
            task = self._tasks.get(destination)
            if task is not None and not task.done():
                self._nudges[destination].set()
            elif destinations is not None and self._woken is not None:
                self._woken.add(destination)
        if destinations is None:
            self._woken = None  # list the destinations with pending rows
        self._wake.set()

    def _start(self, destination: str) -> None:
        task = self._tasks.get(destination)
        if task is not None and not task.done():
            return
        failure = task.exception() if task is not None and not task.cancelled() else None
        if failure is not None:
            log.error("destination loop failed; restarting it",
                      extra={"destination": destination, "error": type(failure).__name__})
        if self.sender_for(destination) is None:
            if destination not in self._unconfigured:
                self._unconfigured.add(destination)
                log.warning("messages queued for a destination with no endpoint configured",
                            extra={"destination": destination})
            return
        self._tasks[destination] = asyncio.create_task(self._destination_loop(destination))

    async def run(self, stop: asyncio.Event | None = None, *,
                  ready: Callable[[], None] | None = None) -> None:
        """Run until ``stop`` is set: one task per destination with pending messages.

        Destinations are listed every ``poll_interval_s``, and at once when a commit enqueues rows
        (in this process, or in another one through PostgreSQL ``LISTEN``).  ``ready`` is called
        once the worker listens for those wake-ups.
        """
        self._stop = stop or asyncio.Event()
        self._wake = asyncio.Event()
        loop = asyncio.get_running_loop()

        def wake(destinations: frozenset[str] | None) -> None:  # from any thread
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to wake
                loop.call_soon_threadsafe(self._on_wake, destinations)

        unsubscribe = subscribe(self.engine, wake)
        listener = (PgListener(self.engine, wake).start()
                    if self.settings.listen and self.engine.dialect.name == "postgresql" else None)
        log.info("delivery worker started", extra={"worker_id": self.worker_id})
        if ready is not None:
            ready()
        try:
            while not self._stop.is_set():
                woken, self._woken = self._woken, set()
                self._wake.clear()
                if woken:  # rows were just committed for these: no need to look them up
                    for destination in sorted(woken):
                        self._start(destination)
                    await self._sleep(self.settings.poll_interval_s, self._wake)
                    continue
                try:
                    destinations = await asyncio.to_thread(self._pending_destinations)
                except SQLAlchemyError as exc:
                    log.warning("database error listing destinations", extra={"error": type(exc).__name__})
                    await self._sleep(self.settings.db_error_pause_s)
                    continue
                for destination in destinations:
                    self._start(destination)
                await self._sleep(self.settings.poll_interval_s, self._wake)
        finally:
            unsubscribe()
            if listener is not None:
                await asyncio.to_thread(listener.stop)
            tasks = list(self._tasks.values())
            if tasks:  # the loops end after their current delivery; cut short only what overruns
                _, overrun = await asyncio.wait(tasks, timeout=self.settings.stop_grace_s)
                for task in overrun:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks.clear()
            self._wake = None
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
            await self.run(stop, ready=started.set)

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
