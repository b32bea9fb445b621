"""Appending to the hash chain, in the caller's transaction, as its last statements.

The chain head is ONE row (``audit_head``, ``id`` 1: the last ``seq``, its hash, and the hash before
it).  Every append first updates it (``UPDATE audit_head SET seq = seq + 1 ...``), which locks it: on
PostgreSQL a row lock held to the end of the transaction, on SQLite the database write lock (already
held by ``BEGIN IMMEDIATE``).  So appends from concurrent transactions are serialized, and each one
sees the previous one's hash.

* **PostgreSQL**: ONE statement per record (one round trip), with the record's hash computed by the
  database from the content hash computed here (:func:`gateway.audit.records.chain_sha256` written in
  SQL)::

      WITH h AS (UPDATE audit_head SET seq = seq + 1, prev_sha256 = sha256, sha256 = encode(sha256(
                   convert_to((seq + 1)::text || ':' || sha256 || ':' || :c, 'UTF8')), 'hex')
                 WHERE id = 1 RETURNING seq, prev_sha256, sha256)
      INSERT INTO audit_record (...) SELECT h.seq, ..., h.prev_sha256, h.sha256 FROM h RETURNING seq

* **SQLite** (in process: statements are cheap): lock and read the head (``UPDATE ... RETURNING``),
  insert the records, store the new head: three statements for any number of records, on the DB-API
  cursor (:mod:`gateway.store.prepared_sql`).

The search references (``audit_ref``) are not written here: :func:`gateway.audit.index.index_refs`
writes them after the fact (the serving process's audit thread, every ``audit_read_flush_s``), so the
ingest transaction writes as few pages as it can.

Lock order, to stay free of deadlocks: a writer takes its own rows first (the order row ``FOR
UPDATE``, the outbox row) and appends LAST, just before it commits, so the head is held only for the
end of the transaction and no transaction waits for anything while holding it.

If the head row is missing (a database emptied by hand, or by the tests), it is recreated from the
last record, or as the genesis head when there is none (``INSERT ... ON CONFLICT DO NOTHING``, then
the append again: two writers recreating it at once both go on); a warning says so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlmodel import Session

from gateway.audit.records import GENESIS_SHA256, AuditEntry, chain_sha256, content_sha256
from gateway.audit.tables import HEAD, RECORDS
from gateway.store.prepared_sql import execute, executemany, fetch_rows

__all__ = ["append", "read_head", "HEAD_ID"]

log = logging.getLogger("cgt_gateway.audit")
HEAD_ID = 1

_LOCK_HEAD = (HEAD.update().where(HEAD.c.id == HEAD_ID)
              .values(seq=HEAD.c.seq + sa.bindparam("n", type_=sa.BigInteger()))
              .returning(HEAD.c.seq, HEAD.c.sha256))
_SET_HEAD = HEAD.update().where(HEAD.c.id == HEAD_ID).values(sha256=sa.bindparam("h"),
                                                             prev_sha256=sa.bindparam("p"))
_LAST_RECORD = sa.select(RECORDS.c.seq, RECORDS.c.prev_sha256, RECORDS.c.sha256).order_by(
    RECORDS.c.seq.desc()).limit(1)
_INSERT_RECORD = RECORDS.insert()
_READ_HEAD = sa.select(HEAD.c.seq, HEAD.c.sha256).where(HEAD.c.id == HEAD_ID)
_PG_APPEND = sa.text(
    "WITH h AS (UPDATE audit_head SET seq = seq + 1, prev_sha256 = sha256, "
    "sha256 = encode(sha256(convert_to((seq + 1)::text || ':' || sha256 || ':' || :c, 'UTF8')), 'hex') "
    "WHERE id = 1 RETURNING seq, prev_sha256, sha256) "
    "INSERT INTO audit_record (seq, at_us, client_id, role, action, operation, entities, patients, outcome, "
    "source, prev_sha256, sha256) SELECT h.seq, :at_us, :client_id, :role, :action, :operation, :entities, "
    ":patients, :outcome, :source, h.prev_sha256, h.sha256 FROM h RETURNING seq")


def _connection(target: Connection | Session) -> Connection:
    return target.connection() if isinstance(target, Session) else target


def _recreate_head(conn: Connection) -> None:
    """The head row is missing: make it again from the last record (or the genesis head)."""
    last = conn.execute(_LAST_RECORD).first()
    if last is not None:
        log.warning("audit chain head row was missing; recreated from the last record",
                    extra={"audit_seq": int(last.seq)})
    values = ({"id": HEAD_ID, "seq": int(last.seq), "sha256": last.sha256, "prev_sha256": last.prev_sha256}
              if last is not None else {"id": HEAD_ID, "seq": 0, "sha256": GENESIS_SHA256,
                                        "prev_sha256": GENESIS_SHA256})
    insert = postgresql.insert(HEAD) if conn.dialect.name == "postgresql" else sqlite.insert(HEAD)
    conn.execute(insert.on_conflict_do_nothing(), values)


def _values(entry: AuditEntry) -> dict[str, object]:
    return {"at_us": entry.at_us, "client_id": entry.client_id, "role": entry.role, "action": entry.action,
            "operation": entry.operation, "entities": orjson.dumps(list(entry.entities)).decode(),
            "patients": orjson.dumps(list(entry.patients)).decode(), "outcome": entry.outcome,
            "source": entry.source}


def _append_pg(conn: Connection, entries: Sequence[AuditEntry]) -> None:
    for entry in entries:
        binds = {**_values(entry), "c": content_sha256(entry)}
        if not fetch_rows(conn, _PG_APPEND, binds):
            _recreate_head(conn)
            fetch_rows(conn, _PG_APPEND, binds)


def _append_sqlite(conn: Connection, entries: Sequence[AuditEntry]) -> None:
    n = len(entries)
    found = fetch_rows(conn, _LOCK_HEAD, {"n": n})
    if not found:
        _recreate_head(conn)
        found = fetch_rows(conn, _LOCK_HEAD, {"n": n})
    first, prev = int(found[0].seq) - n + 1, str(found[0].sha256)
    records: list[dict[str, object]] = []
    before = prev
    for seq, entry in enumerate(entries, start=first):
        sha = chain_sha256(seq, prev, content_sha256(entry))
        records.append({"seq": seq, **_values(entry), "prev_sha256": prev, "sha256": sha})
        before, prev = prev, sha
    executemany(conn, _INSERT_RECORD, records)
    execute(conn, _SET_HEAD, {"h": prev, "p": before})


def append(target: Connection | Session, entries: Sequence[AuditEntry]) -> None:
    """Append ``entries`` to the chain in the transaction of ``target`` (the commit is the caller's)."""
    if not entries:
        return
    conn = _connection(target)
    if conn.dialect.name == "postgresql":
        _append_pg(conn, entries)
    else:
        _append_sqlite(conn, entries)


def read_head(conn: Connection) -> tuple[int, str] | None:
    """The chain head (last sequence number, its hash), or None if the head row is missing."""
    row = conn.execute(_READ_HEAD).first()
    return None if row is None else (int(row.seq), str(row.sha256))
