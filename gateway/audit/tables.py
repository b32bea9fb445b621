"""The audit trail's tables (migration ``0008_audit``).

``audit_record``: one row per record, ``seq`` 1, 2, 3 ... with no gaps, each holding the previous
record's hash and its own (:mod:`gateway.audit.records`).  ``entities`` and ``patients`` are JSON arrays
of strings (the hashed form).

``audit_ref``: the same references again, one row each, keyed for ``GET /fhir/AuditEvent?entity=|patient=``
(not hashed: a search aid; ``audit verify`` reads ``audit_record`` only), written after the fact by
:func:`gateway.audit.index.index_refs` up to ``audit_index_mark.seq``, so the ingest transaction does
not write them.

``audit_head``: ONE row (``id`` 1), the chain's last ``seq``, its hash and the one before it; a writer
locks it (an ``UPDATE``) for the rest of its transaction, so appends are serialized, and ``audit
verify`` compares it with the last record (a deleted last record shows).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

__all__ = ["AuditRecordRow", "AuditRefRow", "AuditHeadRow", "AuditIndexMarkRow", "RECORDS", "REFS", "HEAD",
           "INDEX_MARK"]


def _str(length: int, **kw: Any) -> Any:
    return Field(sa_type=sa.String(length), **kw)


class AuditRecordRow(SQLModel, table=True):
    __tablename__ = "audit_record"
    __table_args__ = (
        sa.Index("ix_audit_record_at", "at_us", "seq"),
        sa.Index("ix_audit_record_client", "client_id", "seq"),
    )

    seq: int = Field(sa_column=sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False))
    at_us: int = Field(sa_type=sa.BigInteger())
    client_id: str = _str(128)
    role: str = _str(140)
    action: str = _str(16)
    operation: str = _str(64)
    entities: str = Field(sa_type=sa.Text())
    patients: str = Field(sa_type=sa.Text())
    outcome: str = _str(64)
    source: str = _str(256)
    prev_sha256: str = _str(64)
    sha256: str = _str(64)


class AuditRefRow(SQLModel, table=True):
    """The primary key ``(ref, kind, seq)`` is the search index itself (no second index to write; on
    SQLite the table is ``WITHOUT ROWID``: that key is the only b-tree)."""

    __tablename__ = "audit_ref"
    __table_args__ = {"sqlite_with_rowid": False}

    ref: str = Field(sa_column=sa.Column("ref", sa.String(200), primary_key=True))
    kind: str = Field(sa_column=sa.Column("kind", sa.String(1), primary_key=True))  # "e" entity, "p" patient
    seq: int = Field(sa_column=sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False))


class AuditHeadRow(SQLModel, table=True):
    __tablename__ = "audit_head"

    id: int = Field(sa_column=sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False))
    seq: int = Field(sa_type=sa.BigInteger())
    sha256: str = _str(64)
    prev_sha256: str = _str(64)  # the hash before the last (PostgreSQL's one-statement append reads it back)


class AuditIndexMarkRow(SQLModel, table=True):
    """ONE row (``id`` 1): the last ``seq`` whose references are in ``audit_ref``."""

    __tablename__ = "audit_index_mark"

    id: int = Field(sa_column=sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False))
    seq: int = Field(sa_type=sa.BigInteger())


RECORDS: sa.Table = AuditRecordRow.__table__  # type: ignore[attr-defined]
REFS: sa.Table = AuditRefRow.__table__  # type: ignore[attr-defined]
HEAD: sa.Table = AuditHeadRow.__table__  # type: ignore[attr-defined]
INDEX_MARK: sa.Table = AuditIndexMarkRow.__table__  # type: ignore[attr-defined]
