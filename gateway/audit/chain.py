"""Appending to the hash chain, in the caller's transaction.

:func:`append` locks the chain head first (``UPDATE audit_head SET seq = seq + n ... RETURNING``: on
PostgreSQL a row lock held to the end of the transaction, on SQLite the database write lock), so
appends from concurrent transactions are serialized and each sees the previous one's hash.  Then it
inserts the records and their search references and stores the new head hash: four statements,
whatever the number of entries, run on the DB-API cursor (:mod:`gateway.store.prepared_sql`: on the
ingest path SQLAlchemy's per-statement machinery would cost more than the database).

Lock order, to stay free of deadlocks: a writer takes its own rows first (the order row ``FOR
UPDATE``, the outbox row) and appends to the audit trail LAST, just before it commits, so the head
is held only for the end of the transaction and no transaction waits for anything while holding it.

If the head row is missing (a database emptied by hand, or by the tests), it is recreated from the
last record, or as the genesis head when there is none (``INSERT ... ON CONFLICT DO NOTHING``, then
the lock again: two writers recreating it at once both go on); a warning says so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlmodel import Session

from gateway.audit.records import GENESIS_SHA256, AuditEntry, record_sha256
from gateway.audit.tables import HEAD, RECORDS, REFS
from gateway.store.prepared_sql import execute, executemany, fetch_rows

__all__ = ["append", "read_head", "HEAD_ID"]

log = logging.getLogger("cgt_gateway.audit")
HEAD_ID = 1

_LOCK_HEAD = (HEAD.update().where(HEAD.c.id == HEAD_ID)
              .values(seq=HEAD.c.seq + sa.bindparam("n", type_=sa.BigInteger()))
              .returning(HEAD.c.seq, HEAD.c.sha256))
_SET_HEAD = HEAD.update().where(HEAD.c.id == HEAD_ID).values(sha256=sa.bindparam("h"))
_LAST_RECORD = sa.select(RECORDS.c.seq, RECORDS.c.sha256).order_by(RECORDS.c.seq.desc()).limit(1)
_INSERT_RECORD = RECORDS.insert()
_INSERT_REF = REFS.insert()
_READ_HEAD = sa.select(HEAD.c.seq, HEAD.c.sha256).where(HEAD.c.id == HEAD_ID)


def _connection(target: Connection | Session) -> Connection:
    return target.connection() if isinstance(target, Session) else target


def _lock_head(conn: Connection, n: int) -> tuple[int, str]:
    """Lock the head, reserve ``n`` sequence numbers; (the first one, the previous hash)."""
    found = fetch_rows(conn, _LOCK_HEAD, {"n": n})
    row = found[0] if found else None
    if row is None:
        last = conn.execute(_LAST_RECORD).first()
        seq, sha = (int(last.seq), str(last.sha256)) if last is not None else (0, GENESIS_SHA256)
        if last is not None:
            log.warning("audit chain head row was missing; recreated from the last record",
                        extra={"audit_seq": seq})
        insert = (postgresql.insert(HEAD) if conn.dialect.name == "postgresql" else sqlite.insert(HEAD))
        conn.execute(insert.on_conflict_do_nothing(), {"id": HEAD_ID, "seq": seq, "sha256": sha})
        row = conn.execute(_LOCK_HEAD, {"n": n}).first()  # another writer may have made it first
        assert row is not None
    return int(row.seq) - n + 1, str(row.sha256)


def append(target: Connection | Session, entries: Sequence[AuditEntry]) -> int:
    """Append ``entries`` to the chain in the transaction of ``target`` (commit is the caller's);
    returns the last sequence number used (0 when ``entries`` is empty)."""
    if not entries:
        return 0
    conn = _connection(target)
    first, prev = _lock_head(conn, len(entries))
    records = []
    refs = []
    for seq, entry in enumerate(entries, start=first):
        sha = record_sha256(seq, entry, prev)
        records.append({"seq": seq, "at_us": entry.at_us, "client_id": entry.client_id, "role": entry.role,
                        "action": entry.action, "operation": entry.operation,
                        "entities": orjson.dumps(list(entry.entities)).decode(),
                        "patients": orjson.dumps(list(entry.patients)).decode(),
                        "outcome": entry.outcome, "source": entry.source, "prev_sha256": prev, "sha256": sha})
        refs.extend({"seq": seq, "kind": "e", "ref": ref} for ref in entry.entities)
        refs.extend({"seq": seq, "kind": "p", "ref": ref} for ref in entry.patients)
        prev = sha
    executemany(conn, _INSERT_RECORD, records)
    executemany(conn, _INSERT_REF, refs)
    execute(conn, _SET_HEAD, {"h": prev})
    return first + len(entries) - 1


def read_head(conn: Connection) -> tuple[int, str] | None:
    """The chain head (last sequence number, its hash), or None if the head row is missing."""
    row = conn.execute(_READ_HEAD).first()
    return None if row is None else (int(row.seq), str(row.sha256))
