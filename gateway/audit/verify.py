"""``audit verify``: walk the chain and name the first record changed, removed or reordered.

Records are read in ``seq`` order, 1000 at a time (memory stays flat).  For each record:

* its ``seq`` must be the next number (1, 2, ...): a gap means records were **removed**;
* its ``prev_sha256`` must be the hash of the record before it (64 zeros for record 1);
* its ``sha256`` must be the hash of its own canonical serialization, ``seq`` included
  (:mod:`gateway.audit.records`).

A record whose content was **changed** fails the third check; one whose hash was rewritten too fails the
second check at the next record (named as the changed one); two records' contents **swapped** fail
the third check at the first of them (the hash covers the place).  At the end the chain head row must
name the last record and its hash: a deleted LAST record (or a head moved back) shows there.  An
``anchor`` (a ``seq`` and hash logged earlier, see ``audit_head_log_s``) must still be in the chain: a
chain rewritten from some record on, head included, shows against it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.audit.chain import read_head
from gateway.audit.records import GENESIS_SHA256, AuditEntry, record_sha256
from gateway.audit.tables import RECORDS

__all__ = ["ChainReport", "verify_chain", "entry_of_row"]

_BATCH = 1000


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    records: int  # records checked
    head_seq: int
    head_sha256: str
    problem: str | None = None  # what is wrong, naming the record
    bad_seq: int | None = None


def entry_of_row(row: sa.Row) -> AuditEntry:  # type: ignore[type-arg]
    return AuditEntry(int(row.at_us), row.client_id, row.role, row.action, row.operation,
                      tuple(orjson.loads(row.entities)), tuple(orjson.loads(row.patients)), row.outcome,
                      row.source)


def _rows(engine: Engine) -> Iterator[sa.Row]:  # type: ignore[type-arg]
    after = -1
    query = (sa.select(RECORDS).where(RECORDS.c.seq > sa.bindparam("after"))
             .order_by(RECORDS.c.seq).limit(_BATCH))
    while True:
        with engine.connect() as conn:
            rows = conn.execute(query, {"after": after}).all()
        if not rows:
            return
        yield from rows
        after = int(rows[-1].seq)


def verify_chain(engine: Engine, *, anchor: tuple[int, str] | None = None) -> ChainReport:
    """Check the whole chain (see the module docstring)."""
    expected_seq, prev, count = 1, GENESIS_SHA256, 0
    anchored = anchor is None

    def fail(seq: int, problem: str) -> ChainReport:
        return ChainReport(False, count, expected_seq - 1, prev, f"record {seq}: {problem}", seq)

    for row in _rows(engine):
        seq = int(row.seq)
        if seq != expected_seq:
            missing = (f"record {expected_seq} was removed" if seq == expected_seq + 1
                       else f"records {expected_seq} to {seq - 1} were removed")
            return ChainReport(False, count, expected_seq - 1, prev,
                               f"record {expected_seq}: {missing} (the next record present is {seq})",
                               expected_seq)
        try:
            content = record_sha256(seq, entry_of_row(row), row.prev_sha256)
        except (orjson.JSONDecodeError, TypeError, ValueError):
            content = ""
        if content != row.sha256:
            return fail(seq, "changed or reordered: its content does not match its hash")
        if row.prev_sha256 != prev:  # this record is intact: the one before it was rewritten, hash too
            if seq == 1:
                return fail(seq, "changed: the first record does not start from the genesis hash")
            expected_seq -= 1
            return fail(seq - 1, f"changed or replaced: record {seq} holds another hash for it")
        if anchor is not None and seq == anchor[0]:
            if row.sha256 != anchor[1]:
                return fail(seq, "changed: its hash differs from the anchored one")
            anchored = True
        prev, expected_seq, count = row.sha256, seq + 1, count + 1
    with engine.connect() as conn:
        head = read_head(conn)
    last = expected_seq - 1
    if head is None:
        return ChainReport(False, count, last, prev, "the chain head row is missing", None)
    if head[0] > last:
        return ChainReport(False, count, last, prev,
                           f"record {last + 1}: removed (the chain head says the last record is {head[0]})",
                           last + 1)
    if head != (last, prev):
        return ChainReport(False, count, last, prev,
                           f"record {last}: the chain head ({head[0]}, {head[1][:12]}...) does not match the "
                           "last record", last)
    if not anchored:
        assert anchor is not None
        return ChainReport(False, count, last, prev,
                           f"record {anchor[0]}: removed (the anchored record is not in the chain)",
                           anchor[0])
    return ChainReport(True, count, last, prev)
