"""Order and event intake: every accepted write happens in ONE transaction.

``accept_order`` and ``accept_event`` validate what needs no database first (site, product, CoI
format, DIN), then open a write transaction (``BEGIN IMMEDIATE`` on SQLite; the order row locked
with ``SELECT ... FOR UPDATE`` on PostgreSQL), decide, append the event row, update the order's
state, and call ``gateway.intake.pipeline.process_event`` before committing.  Unique constraints settle
races: on ``IntegrityError`` the transaction is retried, and the retry sees the winner's rows and
answers "identical replay" (200) or "conflict" (409).

The statements are SQLAlchemy Core, built once; the order's history for the translation comes from
:mod:`gateway.intake.order_history` (read incrementally, see its cache), which is remembered only once the
transaction has committed.

Refused Chain-of-Identity attempts (``coi-mismatch``, ``coi-in-use``, and ``din-in-use`` /
``lot-in-use`` from :mod:`gateway.intake.identity_claims`) roll back and are written to the safety log in a
transaction of their own.  Nothing here logs patient data.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from gateway.audit import SYSTEM_ACTOR, Actor, AuditEntry
from gateway.audit import append as append_audit
from gateway.audit.patients import event_reference, order_reference, patient_reference
from gateway.context import Context
from gateway.errors import (
    CoiError,
)
from gateway.intake.order_history import (
    build_snapshot,
    event_record,
)
from gateway.store.db import write_session
from gateway.store.search_params import to_us
from gateway.store.tables import EventRow, OrderRow, PatientCoiRow, SafetyLogRow

__all__ = [
    "ORDERS",
    "EVENTS",
    "PATIENT_COIS",
    "Refused",
    "canonical_sha256",
    "placed_event_id",
    "retrying_on_conflict",
    "write_safety_log",
    "insert_row",
    "event_record",
    "build_snapshot",
    "audit_write",
    "stored_mrn",
    "order_reference",
    "event_reference",
]

log = logging.getLogger(__name__)
_RETRIES = 5

ORDERS: sa.Table = OrderRow.__table__  # type: ignore[attr-defined]
EVENTS: sa.Table = EventRow.__table__  # type: ignore[attr-defined]
PATIENT_COIS: sa.Table = PatientCoiRow.__table__  # type: ignore[attr-defined]


class Refused(Exception):
    """Carries a CoI refusal out of the write transaction (which then rolls back)."""

    def __init__(self, error: CoiError, entry: SafetyLogRow) -> None:
        self.error = error
        self.entry = entry


def canonical_sha256(value: Any) -> str:
    """SHA-256 of the canonical JSON form (sorted keys) of ``value``."""
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


def placed_event_id(order_id: str) -> str:
    """The stored ``event_id`` of an order's own ``order.placed`` event."""
    return f"{order_id}:placed"


def retrying_on_conflict(action: Any) -> Any:
    """Run the write transaction ``action``; on ``IntegrityError`` (a race lost to a unique constraint)
    run it again, up to five times: the retry sees the winner's rows."""
    for _ in range(_RETRIES - 1):
        try:
            return action()
        except IntegrityError:
            log.info("write conflict, retrying")
    return action()


def write_safety_log(context: Context, entry: SafetyLogRow) -> None:
    with write_session(context.engine) as session:
        session.add(entry)
    log.warning(
        "chain of identity refusal",
        extra={
            "code": entry.code,
            "manufacturer_id": entry.manufacturer_id,
            "order_id": entry.order_id,
            "event_id": entry.event_id,
        },
    )


def insert_row(conn: Connection, table: sa.Table, values: dict[str, Any]) -> int:
    """INSERT one row; its new primary key."""
    key = conn.execute(table.insert(), values).inserted_primary_key
    assert key is not None
    return int(key[0])




_ORDER_BODY = sa.select(ORDERS.c.body).where(ORDERS.c.id == sa.bindparam("pk"))


def stored_mrn(conn: Connection, order_pk: int) -> str:
    """The patient's MRN of a stored order (to derive its Patient id; never logged)."""
    body = conn.execute(_ORDER_BODY, {"pk": order_pk}).scalar_one()
    patient = body.get("patient") if isinstance(body, dict) else None
    return str(patient.get("mrn", "")) if isinstance(patient, dict) else ""


def audit_write(conn: Connection, context: Context, actor: Actor | None, now: Any, action: str,
                operation: str, *, manufacturer_id: str, site_id: str, mrn: str,
                entities: list[str]) -> None:
    """Append the write's audit record in ITS transaction, as the transaction's last statements (the
    order row is locked already: order lock first, audit head last).  Patient: ``Patient/<id>``."""
    if not context.settings.audit_enabled:
        return
    patient = patient_reference(context.profiles, manufacturer_id, site_id, mrn)
    append_audit(conn, [AuditEntry.of(actor or SYSTEM_ACTOR, to_us(now), action, operation, entities=entities,
                                      patients=[patient] if patient else [])])
