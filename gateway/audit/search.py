"""Reading audit records back: search by time, agent, entity and patient (``GET /fhir/AuditEvent``),
and in ``seq`` order from a time on (``audit export``).  Keyset-paged by ``seq``; every page is one
bounded query (``limit`` rows, the reference filters through the ``audit_ref`` index)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.audit.records import AuditEntry
from gateway.audit.tables import RECORDS, REFS
from gateway.audit.verify import entry_of_row

__all__ = ["AuditFilter", "StoredRecord", "search_records", "records_since"]


@dataclass(frozen=True)
class AuditFilter:
    """Conditions ANDed; the values of one condition ORed.  ``dates``: (prefix, lo_us, hi_us) with
    prefix eq/ge/gt/le/lt over the half-open range [lo, hi) a FHIR date covers."""

    dates: tuple[tuple[str, int, int], ...] = ()
    agents: tuple[tuple[str, ...], ...] = ()
    entities: tuple[tuple[str, ...], ...] = ()
    patients: tuple[tuple[str, ...], ...] = ()
    extra: tuple[object, ...] = field(default=())


@dataclass(frozen=True)
class StoredRecord:
    seq: int
    entry: AuditEntry
    prev_sha256: str
    sha256: str


def _date_clause(prefix: str, lo: int, hi: int) -> sa.ColumnElement[bool]:
    at = RECORDS.c.at_us
    if prefix == "ge":
        return at >= lo
    if prefix == "gt":
        return at >= hi
    if prefix == "le":
        return at < hi
    if prefix == "lt":
        return at < lo
    return sa.and_(at >= lo, at < hi)


def _ref_clause(kind: str, values: Sequence[str]) -> sa.ColumnElement[bool]:
    return RECORDS.c.seq.in_(sa.select(REFS.c.seq).where(REFS.c.kind == kind, REFS.c.ref.in_(list(values))))


def _stored(row: sa.Row) -> StoredRecord:  # type: ignore[type-arg]
    return StoredRecord(int(row.seq), entry_of_row(row), row.prev_sha256, row.sha256)


def search_records(conn: Connection, where: AuditFilter, *, after_seq: int, limit: int) -> list[StoredRecord]:
    """Up to ``limit`` records matching ``where`` with ``seq > after_seq``, in ``seq`` order."""
    clauses: list[sa.ColumnElement[bool]] = [RECORDS.c.seq > after_seq]
    clauses += [_date_clause(*d) for d in where.dates]
    clauses += [sa.or_(RECORDS.c.client_id.in_(list(a)), RECORDS.c.role.in_(list(a))) for a in where.agents]
    clauses += [_ref_clause("e", e) for e in where.entities]
    clauses += [_ref_clause("p", p) for p in where.patients]
    query = sa.select(RECORDS).where(*clauses).order_by(RECORDS.c.seq).limit(limit)
    return [_stored(row) for row in conn.execute(query)]


def records_since(engine: Engine, since_us: int, *, batch: int = 1000) -> Iterator[StoredRecord]:
    """Every record recorded at or after ``since_us``, in ``seq`` order, read ``batch`` at a time."""
    after = 0
    where = AuditFilter(dates=(("ge", since_us, since_us + 1),))
    while True:
        with engine.connect() as conn:
            page = search_records(conn, where, after_seq=after, limit=batch)
        yield from page
        if len(page) < batch:
            return
        after = page[-1].seq
