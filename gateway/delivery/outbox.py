"""The outbox: one row per (event output, destination), written in the event's own transaction.

A *destination* is one FIFO queue (``site-a/mllp``, ``site-a/fhir``, ``acme-bio/webhook``).
Rows are delivered strictly in ``id`` order per destination: a message waiting for a retry holds
the queue; a dead-lettered or skipped message lets it move on.  Every attempt is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Column, ColumnElement, DateTime, Index, Integer, Text, func, select
from sqlmodel import Field, Session, SQLModel, col

from gateway.delivery.wakeup import mark_enqueued
from gateway.errors import Conflict, NotFound
from gateway.store.tables import as_utc

__all__ = [
    "MessageState",
    "OutboxMessage",
    "DeliveryAttempt",
    "DestinationLease",
    "DeliveryAlert",
    "NewMessage",
    "enqueue",
    "pending_destinations",
    "has_pending",
    "list_messages",
    "attempts_for",
    "queue_stats",
    "get_message",
    "replay",
    "skip",
    "message_view",
    "iso_utc",
]


def _ts(nullable: bool = False) -> Any:
    """A timestamp column: TIMESTAMPTZ on PostgreSQL; SQLite keeps the UTC wall time (we write UTC)."""
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable))


class MessageState(StrEnum):
    pending = "pending"  # waiting to be (re)sent; holds its destination's queue
    delivered = "delivered"
    dead = "dead"  # permanent failure (AE/CE, 4xx); kept for inspection and replay
    skipped = "skipped"  # an operator chose not to deliver it, with a reason


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox_message"
    __table_args__ = (
        Index("ix_outbox_destination_state_id", "destination", "state", "id"),
        Index("ix_outbox_order", "manufacturer_id", "order_id"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger().with_variant(Integer, "sqlite"),
                                                          primary_key=True, autoincrement=True))
    destination: str = Field(max_length=200)
    channel: str = Field(max_length=16)  # mllp | fhir | webhook
    site_id: str = Field(max_length=64)
    manufacturer_id: str = Field(max_length=64)
    order_id: str = Field(max_length=64)
    event_id: str = Field(max_length=64)
    control_id: str = Field(max_length=64)  # MSH-10, Bundle id or webhook delivery id: same on every retry
    message_type: str = Field(max_length=32)  # OML^O21, transaction, order.status ...
    content_type: str = Field(max_length=64)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    state: str = Field(default=MessageState.pending, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = _ts()
    created_at: datetime = _ts()
    finished_at: datetime | None = _ts(nullable=True)
    last_outcome: str | None = Field(default=None, max_length=32)
    last_detail: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    skip_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class DeliveryAttempt(SQLModel, table=True):
    __tablename__ = "delivery_attempt"
    __table_args__ = (Index("ix_attempt_message", "message_id", "id"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger().with_variant(Integer, "sqlite"),
                                                          primary_key=True, autoincrement=True))
    message_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    attempted_at: datetime = _ts()
    outcome: str = Field(max_length=32)  # delivered | retry | dead | warning
    ack_code: str | None = Field(default=None, max_length=8)
    http_status: int | None = None
    latency_ms: float | None = None
    detail: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    worker_id: str | None = Field(default=None, max_length=128)


class DestinationLease(SQLModel, table=True):
    """One worker delivers a destination at a time; the lease expires if the worker dies."""

    __tablename__ = "destination_lease"

    destination: str = Field(primary_key=True, max_length=200)
    owner: str = Field(max_length=128)
    expires_at: datetime = _ts()


class DeliveryAlert(SQLModel, table=True):
    __tablename__ = "delivery_alert"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts()
    destination: str = Field(max_length=200)
    message_id: int | None = None
    kind: str = Field(max_length=32)  # dead-letter | warning (e.g. MSA-2 mismatch) | retries-exceeded
    detail: str = Field(sa_column=Column(Text, nullable=False))


class NewMessage(SQLModel):
    """What the pipeline asks to enqueue (no id/state yet)."""

    destination: str
    channel: str
    control_id: str
    message_type: str
    content_type: str
    payload: str
    refused: str | None = None  # never to be sent (why: field paths, no values): stored dead, with an alert


def enqueue(session: Session, messages: Sequence[NewMessage], *, site_id: str, manufacturer_id: str,
            order_id: str, event_id: str, now: datetime) -> list[OutboxMessage]:
    """Add rows in the caller's transaction (the caller commits with the event).

    Once that transaction commits, the delivery worker is woken (:mod:`gateway.delivery.wakeup`).
    """
    rows = [
        OutboxMessage(destination=m.destination, channel=m.channel, site_id=site_id,
                      manufacturer_id=manufacturer_id, order_id=order_id, event_id=event_id,
                      control_id=m.control_id, message_type=m.message_type, content_type=m.content_type,
                      payload=m.payload, next_attempt_at=now, created_at=now)
        for m in messages
    ]
    for row, message in zip(rows, messages, strict=True):
        if message.refused is not None:  # e.g. text outside the site's charset with charset_fallback: refuse
            row.state, row.finished_at = MessageState.dead.value, now
            row.last_outcome, row.last_detail = "refused", message.refused
    session.add_all(rows)
    refused = [(row, m.refused) for row, m in zip(rows, messages, strict=True) if m.refused is not None]
    if refused:
        session.flush()  # the alerts name the rows' ids
        session.add_all(DeliveryAlert(at=now, destination=row.destination, message_id=row.id,
                                      kind="dead-letter", detail=reason or "") for row, reason in refused)
    pending = {row.destination for row in rows if row.state == MessageState.pending}
    if pending:
        mark_enqueued(session, pending)
    return rows


def _pending(destination: str | None = None) -> list[ColumnElement[bool]]:
    where = [col(OutboxMessage.state) == MessageState.pending]
    if destination is not None:
        where.append(col(OutboxMessage.destination) == destination)
    return where


def pending_destinations(session: Session) -> list[str]:
    stmt = select(col(OutboxMessage.destination)).where(*_pending()).distinct()
    return sorted(session.execute(stmt).scalars())


def has_pending(session: Session, destination: str) -> bool:
    """True if ``destination`` has a pending message (reads one id, never a payload)."""
    stmt = select(col(OutboxMessage.id)).where(*_pending(destination)).limit(1)
    return session.execute(stmt).first() is not None


def list_messages(session: Session, *, destination: str | None = None, state: str | None = None,
                  after_id: int | None = None, limit: int = 100) -> list[OutboxMessage]:
    stmt = select(OutboxMessage).order_by(col(OutboxMessage.id)).limit(limit)
    if destination:
        stmt = stmt.where(col(OutboxMessage.destination) == destination)
    if state:
        stmt = stmt.where(col(OutboxMessage.state) == state)
    if after_id is not None:
        stmt = stmt.where(col(OutboxMessage.id) > after_id)
    return list(session.execute(stmt).scalars())


def attempts_for(session: Session, message_id: int) -> list[DeliveryAttempt]:
    stmt = (select(DeliveryAttempt).where(col(DeliveryAttempt.message_id) == message_id)
            .order_by(col(DeliveryAttempt.id)))
    return list(session.execute(stmt).scalars())


def queue_stats(session: Session) -> list[tuple[str, str, int, datetime | None]]:
    """(destination, state, count, oldest created_at) for every destination and state."""
    destination, state = col(OutboxMessage.destination), col(OutboxMessage.state)
    stmt = (select(destination, state, func.count(), func.min(col(OutboxMessage.created_at)))
            .group_by(destination, state))
    return [(d, s, int(n), oldest) for d, s, n, oldest in session.execute(stmt).all()]


def get_message(session: Session, message_id: int) -> OutboxMessage:
    # an id no row can have (ids are positive BIGINTs) is not looked up: PostgreSQL would refuse it
    message = session.get(OutboxMessage, message_id) if 0 < message_id < 2**63 else None
    if message is None:
        raise NotFound(f"outbox message {message_id} does not exist", code="message-not-found")
    return message


def _message_in(session: Session, message_id: int, states: tuple[MessageState, MessageState], *, verb: str,
                code: str) -> OutboxMessage:
    """Message ``message_id`` if it is in one of ``states``, else ``409 code`` ("only <states> messages
    can be <verb>"): what an operator may act on."""
    message = get_message(session, message_id)
    if message.state not in states:
        raise Conflict(f"message {message_id} is {message.state}; "
                       f"only {states[0]} or {states[1]} messages can be {verb}", code=code)
    return message


def _committed(session: Session, message: OutboxMessage) -> OutboxMessage:
    """Commit an operator's change to ``message`` and return it as stored."""
    session.add(message)
    session.commit()
    session.refresh(message)
    return message


def replay(session: Session, message_id: int, *, now: datetime) -> OutboxMessage:
    """Put a dead-lettered or skipped message back at its place in the queue (same control id).

    It keeps its id, so it is delivered before anything queued after it: FIFO holds for replays.
    """
    message = _message_in(session, message_id, (MessageState.dead, MessageState.skipped), verb="replayed",
                          code="not-replayable")
    message.state = MessageState.pending
    message.next_attempt_at = now
    message.finished_at = None
    return _committed(session, message)


def skip(session: Session, message_id: int, *, reason: str, now: datetime) -> OutboxMessage:
    """Take a pending or dead message out of the queue for good, recording who-knows-why."""
    if not reason.strip():
        raise Conflict("a reason is required to skip a message", code="reason-required")
    message = _message_in(session, message_id, (MessageState.pending, MessageState.dead), verb="skipped",
                          code="not-skippable")
    message.state = MessageState.skipped
    message.skip_reason = reason
    message.finished_at = now
    return _committed(session, message)


def iso_utc(value: datetime) -> str:
    """A stored time in UTC with its offset (SQLite hands it back naive: it was stored as UTC)."""
    return as_utc(value).isoformat()


def message_view(message: OutboxMessage, attempts: Sequence[DeliveryAttempt] | None = None,
                 *, with_payload: bool = False) -> dict[str, object]:
    """JSON-ready view for the admin API and CLI. The payload (PHI) only when asked for."""
    view: dict[str, object] = {
        "id": message.id, "destination": message.destination, "channel": message.channel,
        "site_id": message.site_id, "manufacturer_id": message.manufacturer_id, "order_id": message.order_id,
        "event_id": message.event_id, "control_id": message.control_id, "message_type": message.message_type,
        "state": message.state, "attempts": message.attempts,
        "next_attempt_at": iso_utc(message.next_attempt_at), "created_at": iso_utc(message.created_at),
        "finished_at": iso_utc(message.finished_at) if message.finished_at else None,
        "last_outcome": message.last_outcome, "last_detail": message.last_detail,
        "skip_reason": message.skip_reason,
    }
    if attempts is not None:
        view["attempt_log"] = [
            {"at": iso_utc(a.attempted_at), "outcome": a.outcome, "ack_code": a.ack_code,
             "http_status": a.http_status, "latency_ms": a.latency_ms, "detail": a.detail,
             "worker": a.worker_id}
            for a in attempts
        ]
    if with_payload:
        view["payload"] = message.payload
        view["content_type"] = message.content_type
    return view
