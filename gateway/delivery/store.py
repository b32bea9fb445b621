"""The delivery worker's database side: claim a destination's head under its lease, record an attempt.

Synchronous: the worker (:mod:`gateway.delivery.worker`) runs each call in a thread
(``asyncio.to_thread``), so a slow or locked database never stalls the MLLP read deadlines of other
destinations.

Per message: the head is claimed (the lease taken or renewed in the same transaction, once half of
it has run: :class:`~gateway.delivery.lease.LeaseBook`); after the send, one transaction records the
attempt and the message's new state and reads the next head (one row).  Statements are built once,
in SQLAlchemy Core (:mod:`gateway.delivery.queue`), on one connection per destination kept from one
message to the next; no ORM unit of work.  Each message is read when it is the head, so an
operator's replay or skip is seen at once and memory does not grow with the backlog.  A dead letter
(rare) is recorded in an ORM session, so ``on_dead_letter`` can enqueue follow-ups in its transaction.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, insert
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from adapters.delivery_result import DeliveryOutcome
from gateway.delivery.lease import LeaseBook
from gateway.delivery.outbox import (
    DeliveryAlert,
    MessageState,
    OutboxMessage,
    has_pending,
    pending_destinations,
)
from gateway.delivery.queue import insert_attempt, mark_outcome, read_head
from gateway.delivery.settings import WorkerSettings
from gateway.store.tables import as_utc

__all__ = ["DeliveryStore", "DestinationConnection", "DeadLetterHook"]

log = logging.getLogger("cgt_gateway.delivery")

# Called in the transaction that dead-letters a message, to enqueue follow-ups (e.g. tell the
# manufacturer over its webhook that the site refused its order).
DeadLetterHook = Callable[[Session, OutboxMessage, DeliveryOutcome, datetime], None]


def _begin(connection: Connection) -> None:
    """Open the connection's transaction now, so its statements all run on the DB-API cursor
    (:mod:`gateway.store.prepared_sql` runs a statement there only inside a transaction)."""
    if not connection.in_transaction():
        connection.begin()


@dataclass
class DestinationConnection:
    """The connection a destination's loop reuses from one message to the next."""

    connection: Connection | None = None

    def close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()


@dataclass
class DeliveryStore:
    """One worker's reads and writes of the outbox, leases included (each call in a thread)."""

    engine: Engine
    settings: WorkerSettings
    worker_id: str
    clock: Callable[[], datetime]
    alert_after: Callable[[str], int | None] | None = None  # per-destination alert threshold
    on_dead_letter: DeadLetterHook | None = None
    # Called in each attempt's transaction, after the attempt is recorded (the audit record: gateway.audit)
    on_attempt: Callable[[Connection, OutboxMessage, DeliveryOutcome, datetime], None] | None = None
    leases: LeaseBook = field(init=False)
    _queues: dict[str, DestinationConnection] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.leases = LeaseBook(self.worker_id, self.settings.lease_seconds)

    # ------------------------------------------------------------------ connections

    def _queue(self, destination: str) -> DestinationConnection:
        queue = self._queues.get(destination)
        if queue is None:
            queue = self._queues[destination] = DestinationConnection()
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

    def drop_connection(self, destination: str) -> None:
        """Close the destination loop's connection (after a database error); the next call opens one."""
        self._queue(destination).close()

    def detach_connection(self, destination: str) -> DestinationConnection | None:
        """Forget the destination loop's connection (its loop ended); the caller closes it."""
        return self._queues.pop(destination, None)

    # ------------------------------------------------------------------ one message

    def claim_head(self, destination: str, reuse: bool = False) -> OutboxMessage | None:
        """The head of ``destination`` if it is due and our lease is held (taken here if need be)."""
        now = self.clock()
        with self._connection(destination, reuse) as connection:
            try:
                _begin(connection)
                if not self.leases.hold(connection, destination, now):
                    return None
                message = self._head(connection, destination, now)
                connection.commit()  # the lease, if it was taken or renewed; else ends the read
                return message
            except BaseException:
                self.leases.forget(destination)  # the lease was not written: take it next time
                raise
            finally:
                connection.rollback()

    def _head(self, connection: Connection, destination: str, now: datetime) -> OutboxMessage | None:
        """The queue's head if it is due (our lease is held); gives the lease back if the queue is empty."""
        message = read_head(connection, destination)
        if message is None:
            self.leases.forget(destination)
            connection.rollback()  # in SQLite, a write after a read in one transaction may fail at once
            self.leases.give_back(connection, destination)
            return None
        if as_utc(message.next_attempt_at) > now:
            return None  # keep the lease: the queue waits for its head's retry
        return message

    def renew(self, destination: str) -> bool:
        """Renew our lease on ``destination`` while a send is under way; False if it was lost."""
        return self.leases.renew(self.engine, destination, self.clock())

    def record(self, message: OutboxMessage, outcome: DeliveryOutcome,
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
            fused = claim_next and self.leases.fresh(destination, now)
            with self._connection(destination, claim_next) as connection:
                _begin(connection)
                self._mark(connection, message, status, values, outcome, now)
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
            return following if as_utc(following.next_attempt_at) <= now else None
        return self.claim_head(destination, True) if claim_next else None

    def _record_dead(self, message: OutboxMessage, outcome: DeliveryOutcome, now: datetime) -> None:
        destination = message.destination
        with Session(self.engine) as session:
            values: dict[str, object] = {"attempts": message.attempts + 1, "last_outcome": outcome.status,
                                         "last_detail": outcome.detail, "state": MessageState.dead.value,
                                         "finished_at": now}
            session.add(DeliveryAlert(at=now, destination=destination, message_id=message.id,
                                      kind="dead-letter", detail=outcome.detail or ""))
            if self.on_dead_letter is not None:
                self.on_dead_letter(session, message, outcome, now)
            if outcome.warning:
                session.add(DeliveryAlert(at=now, destination=destination, message_id=message.id,
                                          kind="warning", detail=outcome.warning))
            session.flush()  # the follow-ups first: the attempt's audit record (in _mark) comes last
            self._mark(session.connection(), message, "dead", values, outcome, now)
            session.commit()

    def _mark(self, connection: Connection, message: OutboxMessage, status: str,
              values: dict[str, object], outcome: DeliveryOutcome, now: datetime) -> None:
        """The message's new state (if it is still pending) and the attempt, in the caller's transaction."""
        mark_outcome(connection, message.id or 0, status, values)
        insert_attempt(connection, message_id=message.id or 0, attempted_at=now,
                       outcome=outcome.status, ack_code=outcome.ack_code,
                       http_status=outcome.http_status, latency_ms=outcome.latency_ms,
                       detail=outcome.detail, worker_id=self.worker_id)
        if self.on_attempt is not None:  # last: the outbox row is locked first, the audit head after
            self.on_attempt(connection, message, outcome, now)

    # ------------------------------------------------------------------ the worker's loops

    def has_pending(self, destination: str) -> bool:
        with Session(self.engine) as session:
            return has_pending(session, destination)

    def pending_destinations(self) -> list[str]:
        with Session(self.engine) as session:
            return pending_destinations(session)

    def release_all(self) -> None:
        """Give our leases back on a clean stop, so another worker need not wait for them to expire."""
        try:
            self.leases.give_back_all(self.engine)
        except SQLAlchemyError:
            pass  # they expire on their own
