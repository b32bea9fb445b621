"""The delivery worker's hot path in SQLAlchemy Core: read a queue's head, record an attempt's outcome.

The one way to read a queue's head and to record an outcome (the worker's dead letters too, on its
ORM session's connection): statements built once with bound parameters and run on a plain
``Connection``.  Per message the worker reads the head (one indexed ``SELECT ... LIMIT 1``, one row)
and records its outcome (one ``UPDATE``, one ``INSERT``, one ``COMMIT``), without the ORM's unit of
work, identity map or statement construction, which cost more than the MLLP exchange itself.
Inside a transaction the statements run on the DB-API cursor (:mod:`gateway.store.prepared_sql`: compiled
once, SQLAlchemy's type processing and error translation kept); outside one, through
``Connection.execute``, which begins one.  Leases: :mod:`gateway.delivery.lease`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, bindparam
from sqlalchemy.orm import configure_mappers

from gateway.delivery.outbox import DeliveryAttempt, MessageState, OutboxMessage
from gateway.store import prepared_sql

__all__ = ["read_head", "mark_outcome", "insert_attempt", "to_message"]

_M: sa.Table = OutboxMessage.__table__  # type: ignore[attr-defined]
_A: sa.Table = DeliveryAttempt.__table__  # type: ignore[attr-defined]

_PENDING = sa.and_(_M.c.destination == bindparam("destination"), _M.c.state == MessageState.pending.value)
_HEAD = sa.select(_M).where(_PENDING).order_by(_M.c.id).limit(1)
_UPDATE = {  # only a row still pending is changed (an operator may have skipped it meanwhile)
    status: sa.update(_M).where(_M.c.id == bindparam("message_id"),
                                _M.c.state == MessageState.pending.value).values(
        {name: bindparam(name) for name in names})
    for status, names in {
        "delivered": ("attempts", "last_outcome", "last_detail", "state", "finished_at"),
        "dead": ("attempts", "last_outcome", "last_detail", "state", "finished_at"),
        "retry": ("attempts", "last_outcome", "last_detail", "next_attempt_at"),
    }.items()
}
_INSERT_ATTEMPT = sa.insert(_A)
_ATTEMPT_COLUMNS = ("message_id", "attempted_at", "outcome", "ack_code", "http_status", "latency_ms",
                    "detail", "worker_id")


def to_message(row: Mapping[str, Any] | sa.RowMapping) -> OutboxMessage:
    """A detached :class:`OutboxMessage` from a row (no validation: the row came from the table)."""
    if not _mapped:  # its attributes work once the ORM mappers are configured (no ORM query may have run)
        configure_mappers()
        _mapped.append(True)
    return OutboxMessage.model_construct(**row)


_mapped: list[bool] = []


def read_head(connection: Connection, destination: str) -> OutboxMessage | None:
    """The oldest message still pending for ``destination`` (FIFO head), or None: one row, never more."""
    rows = prepared_sql.fetch_rows(connection, _HEAD, {"destination": destination})
    if not rows:
        return None
    return to_message(rows[0]._asdict())  # a named tuple, or a Row when run through execute


def mark_outcome(connection: Connection, message_id: int, status: str, values: Mapping[str, object]) -> None:
    """Set the new state of a still-pending message (``status``: delivered, dead or retry)."""
    prepared_sql.execute(connection, _UPDATE[status], {"message_id": message_id, **values})


def insert_attempt(connection: Connection, *, message_id: int, attempted_at: datetime, outcome: str,
                   ack_code: str | None, http_status: int | None, latency_ms: float | None,
                   detail: str | None, worker_id: str) -> None:
    prepared_sql.execute(connection, _INSERT_ATTEMPT, {
        "message_id": message_id, "attempted_at": attempted_at, "outcome": outcome, "ack_code": ack_code,
        "http_status": http_status, "latency_ms": latency_ms, "detail": detail, "worker_id": worker_id})
