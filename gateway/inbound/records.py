"""Site request rows: insert, find, move state (with its transition record), and their views.

Runs in the caller's transaction (SQLAlchemy Core).  A request's asked-for columns are written once;
:func:`move` changes only the decision columns and appends a ``site_request_transition`` row.
Every read also gives ``retracted_at``: when the manufacturer retracted the lifecycle event the request
produced (``order_event.retracted_at``, via ``event_pk``), else None.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.store.site_request_tables import SITE_REQUEST_TRANSITIONS as T
from gateway.store.site_request_tables import SITE_REQUESTS as R
from gateway.store.tables import EventRow, as_utc
from mappings.fhir.site_request import request_task_id
from mappings.site_request import FINAL_STATES, TASK_CODE, SiteRequestView

__all__ = ["new_request_id", "dedupe_sha256", "task_id", "insert", "find_by_dedupe", "find", "move",
           "set_ack", "view", "api_view", "COLUMNS"]

_E = EventRow.__table__  # type: ignore[attr-defined]
#: When the manufacturer retracted the lifecycle event the request produced (entered in error): read
#: from the event itself (``order_event.retracted_at``), so the request can never disagree with it.
RETRACTED_AT = (sa.select(_E.c.retracted_at).where(_E.c.id == R.c.event_pk).correlate(R)
                .scalar_subquery().label("retracted_at"))
#: Every column but the raw message (read by nobody here), and ``retracted_at``.
COLUMNS = (*(c for c in R.c if c.name != "raw"), RETRACTED_AT)
_BY_DEDUPE = sa.select(*COLUMNS).where(R.c.site_id == sa.bindparam("s"),
                                       R.c.dedupe_sha256 == sa.bindparam("d"))
_BY_ID = sa.select(*COLUMNS).where(R.c.request_id == sa.bindparam("r"))
_BY_SEQ = sa.select(*COLUMNS).where(R.c.seq == sa.bindparam("q"))


def new_request_id() -> str:
    return f"sr-{uuid.uuid4().hex}"


def dedupe_sha256(key: str) -> str:
    """SHA-256 of an HL7v2 ``MSH-3|MSH-4|MSH-10`` (the site id is the constraint's other column)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def task_id(manufacturer_id: str, order_id: str, request_id: str) -> str:
    """The FHIR request Task's id: derived from the request (so a replay writes the same resource)."""
    return request_task_id(manufacturer_id, order_id, request_id)


def insert(conn: Connection, values: dict[str, Any], *, by: str, now: datetime) -> Any:
    """Insert a request (``values`` holds every asked-for column and its first ``state``) and its first
    transition; the stored row (IntegrityError when its dedupe key exists: the caller retries)."""
    seq = conn.execute(R.insert().values(**values).returning(R.c.seq)).scalar_one()
    conn.execute(T.insert().values(request_seq=seq, from_state=None, to_state=values["state"], at=now, by=by,
                                   reason=values.get("decision_reason")))
    return conn.execute(_BY_SEQ, {"q": seq}).one()


def find_by_dedupe(conn: Connection, site_id: str, sha256: str) -> Any | None:
    return conn.execute(_BY_DEDUPE, {"s": site_id, "d": sha256}).first()


def find(conn: Connection, request_id: str) -> Any | None:
    return conn.execute(_BY_ID, {"r": request_id}).first()


def move(conn: Connection, row: Any, state: str, *, by: str, now: datetime, reason: str | None,
         decided_by: str | None, decision: str | None = None, code: str | None = None,
         event_pk: int | None = None) -> Any:
    """Move ``row`` to ``state``, append its transition; the row as stored now.  A move to a final
    state is the decision (``decided_at``, ``decided_by``, ...); ``awaiting-manufacturer`` is not."""
    values: dict[str, Any] = {"state": state}
    if state in FINAL_STATES:
        values.update(decision_reason=reason, decided_at=now, decided_by=decided_by, decision=decision,
                      decision_code=code)
    if event_pk is not None:
        values["event_pk"] = event_pk
    conn.execute(R.update().where(R.c.seq == row.seq).values(**values))
    conn.execute(T.insert().values(request_seq=row.seq, from_state=row.state, to_state=state, at=now, by=by,
                                   reason=reason))
    return conn.execute(_BY_SEQ, {"q": row.seq}).one()


def set_ack(conn: Connection, seq: int, ack: str) -> None:
    conn.execute(R.update().where(R.c.seq == seq).values(ack=ack))


def view(row: Any) -> SiteRequestView:
    return SiteRequestView(
        request_id=row.request_id, order_id=row.order_id, site_id=row.site_id,
        manufacturer_id=row.manufacturer_id, kind=row.kind, state=row.state, channel=row.channel,
        received_at=as_utc(row.received_at), requested=dict(row.requested or {}), reason=row.reason,
        decision_reason=row.decision_reason,
        decided_at=as_utc(row.decided_at) if row.decided_at is not None else None,
        task_id=task_id(row.manufacturer_id, row.order_id, row.request_id) if row.kind in TASK_CODE else None,
        control_id=row.control_id)


def _iso(value: datetime | None) -> str | None:
    return as_utc(value).isoformat().replace("+00:00", "Z") if value is not None else None


def api_view(row: Any) -> dict[str, Any]:
    """What the API and the webhook show of a request: ids, kind, state, values; no raw message."""
    return {
        "request_id": row.request_id, "order_id": row.order_id, "site_id": row.site_id,
        "manufacturer_id": row.manufacturer_id, "kind": row.kind, "state": row.state, "channel": row.channel,
        "requested": dict(row.requested or {}), "reason": row.reason,
        "received_at": _iso(row.received_at), "decided_at": _iso(row.decided_at),
        "decision_reason": row.decision_reason, "decision_code": row.decision_code,
        "decided_by": row.decided_by,
        # the manufacturer retracted the event this request produced (the request stays applied or
        # accepted: what the site asked and what was decided do not change); else null
        "retracted_at": _iso(row.retracted_at),
    }
