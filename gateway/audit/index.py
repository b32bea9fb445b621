"""The search references of audit records (``audit_ref``), written after the fact.

The ingest transaction appends only the record (:mod:`gateway.audit.chain`); :func:`index_refs` then
writes one ``audit_ref`` row per entity and patient of every record after ``audit_index_mark.seq``,
in transactions of their own, ``batch`` records at a time, and moves the mark.  The serving process's
audit thread runs it every ``audit_read_flush_s`` (:class:`gateway.audit.AuditTrail`), so a search by
``entity`` or ``patient`` sees a record at most about a second after it was written.  Indexers are
serialized by the mark row's lock (an ``UPDATE``), never by the chain head, so they do not hold up
ingest.  A missing mark row (a database emptied by hand) is recreated at 0 and everything re-indexed.
"""

from __future__ import annotations

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from gateway.audit.tables import INDEX_MARK, RECORDS, REFS
from gateway.store.db import write_session

__all__ = ["index_refs"]

_LOCK_MARK = INDEX_MARK.update().where(INDEX_MARK.c.id == 1).values(seq=INDEX_MARK.c.seq).returning(
    INDEX_MARK.c.seq)
_SET_MARK = INDEX_MARK.update().where(INDEX_MARK.c.id == 1).values(seq=sa.bindparam("s"))
_NEXT = (sa.select(RECORDS.c.seq, RECORDS.c.entities, RECORDS.c.patients)
         .where(RECORDS.c.seq > sa.bindparam("after")).order_by(RECORDS.c.seq).limit(sa.bindparam("n")))


def _insert(dialect: str, table: sa.Table) -> sa.Insert:
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    return insert.on_conflict_do_nothing()


def index_refs(engine: Engine, *, batch: int = 1000, most: int = 100_000) -> int:
    """Index the records after the mark (at most ``most`` this call); the number indexed."""
    done = 0
    while done < most:
        with write_session(engine) as session:
            conn = session.connection()
            row = conn.execute(_LOCK_MARK).first()
            if row is None:
                conn.execute(_insert(conn.dialect.name, INDEX_MARK), {"id": 1, "seq": 0})
                row = conn.execute(_LOCK_MARK).first()
                assert row is not None
            rows = conn.execute(_NEXT, {"after": int(row.seq), "n": batch}).all()
            if not rows:
                return done
            refs = []
            for record in rows:
                seq = int(record.seq)
                refs.extend({"ref": ref, "kind": "e", "seq": seq} for ref in orjson.loads(record.entities))
                refs.extend({"ref": ref, "kind": "p", "seq": seq} for ref in orjson.loads(record.patients))
            if refs:
                conn.execute(_insert(conn.dialect.name, REFS), refs)
            conn.execute(_SET_MARK, {"s": int(rows[-1].seq)})
        done += len(rows)
        if len(rows) < batch:
            return done
    return done
