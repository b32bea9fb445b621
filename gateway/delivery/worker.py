"""The delivery worker: drains each destination's outbox queue in FIFO order.

One worker at a time holds a destination (a lease row that expires if the worker dies, renewed
while a send is under way: :mod:`gateway.delivery.lease`), so order holds and nothing is sent twice
concurrently, on SQLite and on PostgreSQL with several workers.  Only the queue's head is read per
destination, so memory stays flat however long the backlog.  A database error never kills the
worker: it waits and resumes.  A message is marked only after its attempt: a worker killed mid-send
leaves it pending, and the next worker resends it with the same control id.

This module is the asyncio side: one task per destination with pending rows, each sending its
queue's head and then, in one thread hop, recording the attempt and reading the next head
(:class:`~gateway.delivery.store.DeliveryStore`, one transaction on the destination's connection).
Database calls run in a thread (a destination loop's on a thread of its own, one hop a message;
the rest through ``asyncio.to_thread``) so a slow or locked database never stalls the MLLP read
deadlines of other destinations.

A commit that enqueues rows wakes the worker (:mod:`gateway.delivery.wakeup`): in-process at once,
from another process through PostgreSQL ``LISTEN/NOTIFY``; polling stays as the fallback (and is
all a standalone worker on SQLite has).  Logs carry ids and outcomes, never payloads or ACK text.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import queue
import socket
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from adapters.delivery_result import DeliveryOutcome
from gateway.audit.delivery import AttemptHook
from gateway.delivery.outbox import OutboxMessage
from gateway.delivery.settings import WorkerSettings
from gateway.delivery.store import DeadLetterHook, DeliveryStore
from gateway.delivery.wakeup import PgListener, subscribe

__all__ = ["Sender", "WorkerSettings", "DeliveryWorker"]

log = logging.getLogger("cgt_gateway.delivery")


class Sender(Protocol):
    """Sends one outbox message to its destination and says what happened; never raises."""

    async def send(self, message: OutboxMessage) -> DeliveryOutcome: ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class _LeaseLost(Exception):
    pass


_T = TypeVar("_T")


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return  # the awaiting task was cancelled: the call ran anyway, its result is dropped
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class _DatabaseThread:
    """A destination loop's database calls, one after the other on a thread of its own.

    What ``asyncio.to_thread`` does (the call runs off the event loop, in the caller's context
    variables), without the executor's bookkeeping: one queue put there, one wake-up of the loop
    back, the cheapest way to make the one thread hop a message costs.  The destination's calls
    are sequential anyway (they share its connection).
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="cgt-delivery-db", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    async def call(self, func: Callable[..., _T], *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        context = contextvars.copy_context()

        def job() -> None:
            try:
                result, error = context.run(func, *args), None
            except BaseException as exc:  # handed to the awaiting task, as to_thread does
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody awaits it
                loop.call_soon_threadsafe(_settle, future, result, error)

        self._jobs.put(job)
        return await future

    def stop(self) -> None:
        """The thread ends once the calls already queued have run."""
        self._jobs.put(None)


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
    on_dead_letter: DeadLetterHook | None = None  # enqueues follow-ups in the dead letter's transaction
    on_attempt: AttemptHook | None = None  # the audit record, in each attempt's transaction
    _stop: asyncio.Event | None = None
    _tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _unconfigured: set[str] = field(default_factory=set)
    _wake: asyncio.Event | None = None  # set when rows were enqueued (see _on_wake)
    _woken: set[str] | None = field(default_factory=set)  # destinations to start; None: look them up
    _nudges: dict[str, asyncio.Event] = field(default_factory=dict)  # per running destination loop
    _store: DeliveryStore = field(init=False, repr=False)  # the database side, called in a thread

    def __post_init__(self) -> None:
        self._store = DeliveryStore(self.engine, self.settings, self.worker_id, self.clock,
                                    alert_after=self.alert_after, on_dead_letter=self.on_dead_letter,
                                    on_attempt=self.on_attempt)

    # ------------------------------------------------------------------ one step

    async def deliver_head(self, destination: str) -> bool:
        """Send the head of ``destination`` if it is due and we hold the lease; True if attempted."""
        sender = self.sender_for(destination)
        if sender is None:
            return False  # destination no longer configured: leave the rows for an operator
        message = await asyncio.to_thread(self._store.claim_head, destination)
        if message is None:
            return False
        attempted, _ = await self._attempt(destination, sender, message, asyncio.to_thread,
                                           claim_next=False)
        return attempted

    async def _drain(self, destination: str, database: _DatabaseThread) -> bool:
        """Deliver the queue's heads one after the other while they are due; True if any was attempted."""
        sender = self.sender_for(destination)
        if sender is None:
            return False
        message = await database.call(self._store.claim_head, destination, True)
        attempted = False
        while message is not None and self._stop is not None and not self._stop.is_set():
            done, message = await self._attempt(destination, sender, message, database.call, claim_next=True)
            attempted = attempted or done
        return attempted

    async def _attempt(self, destination: str, sender: Sender, message: OutboxMessage,
                       in_thread: Callable[..., Awaitable[Any]],
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
        following = await in_thread(self._store.record, message, outcome, claim_next)
        if self.on_outcome is not None:
            self.on_outcome(message, outcome)
        return True, following

    # ------------------------------------------------------------------ sending under the lease

    async def _send_holding_lease(self, destination: str, sender: Sender,
                                  message: OutboxMessage) -> DeliveryOutcome:
        send = asyncio.ensure_future(sender.send(message))
        every = self.settings.lease_seconds / 3
        while True:
            done, _ = await asyncio.wait({send}, timeout=every)
            if done:
                return send.result()
            try:
                held = await asyncio.to_thread(self._store.renew, destination)
            except SQLAlchemyError:
                held = True  # cannot tell; the lease still runs for two thirds of its time
            if not held:
                send.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await send
                raise _LeaseLost(destination)

    # ------------------------------------------------------------------ loops

    async def _destination_loop(self, destination: str) -> None:
        assert self._stop is not None
        nudge = self._nudges.setdefault(destination, asyncio.Event())
        database = _DatabaseThread()
        try:
            while not self._stop.is_set():
                nudge.clear()  # rows committed from here on are seen by the reads below, or nudge again
                try:
                    if await self._drain(destination, database):
                        continue
                    if not await database.call(self._store.has_pending, destination):
                        if nudge.is_set():
                            continue
                        return  # no await from the check to here: a later wake-up starts a new loop
                except SQLAlchemyError as exc:  # database down or locked: survive and retry
                    log.warning("database error in delivery loop", extra={"destination": destination,
                                                                          "error": type(exc).__name__})
                    self._store.drop_connection(destination)
                    await self._sleep(self.settings.db_error_pause_s)
                    continue
                pause = self.settings.poll_interval_s
                if self._store.leases.held_elsewhere(destination):  # being delivered: check back now and then
                    pause = max(pause, self.settings.lease_seconds / 4)
                await self._sleep(pause, nudge)  # rows committed meanwhile cut the pause short
        finally:
            try:
                connection = self._store.detach_connection(destination)
                if connection is not None:
                    await database.call(connection.close)
            finally:
                database.stop()

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
                    destinations = await asyncio.to_thread(self._store.pending_destinations)
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
            await asyncio.to_thread(self._store.release_all)
            if self.close_senders is not None:
                await self.close_senders()
            log.info("delivery worker stopped", extra={"worker_id": self.worker_id})

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

