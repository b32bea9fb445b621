"""Audit trail (issue 14): hash-chained audit records, their search references, the chain head.

Creates ``audit_record``, ``audit_ref``, ``audit_head`` and ``audit_index_mark`` (see
:mod:`gateway.audit.tables`), the genesis head (``seq`` 0, 64 zeros) and the index mark (0).
Downgrade drops them (the audit trail with them).

Revision ID: 0008_audit
Revises: 0007_oauth
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_audit"
down_revision = "0007_oauth"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_record",
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("role", sa.String(140), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("entities", sa.Text(), nullable=False),
        sa.Column("patients", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(64), nullable=False),
        sa.Column("source", sa.String(256), nullable=False),
        sa.Column("prev_sha256", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_record_at", "audit_record", ["at_us", "seq"])
    op.create_index("ix_audit_record_client", "audit_record", ["client_id", "seq"])
    op.create_table(  # the primary key (ref, kind, seq) is the search index
        "audit_ref",
        sa.Column("ref", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(1), primary_key=True),
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sqlite_with_rowid=False,  # SQLite: the key is the only b-tree
    )
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("prev_sha256", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "sha256": "0" * 64, "prev_sha256": "0" * 64}])
    mark = op.create_table(
        "audit_index_mark",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(mark, [{"id": 1, "seq": 0}])


def downgrade() -> None:
    op.drop_table("audit_index_mark")
    op.drop_table("audit_head")
    op.drop_table("audit_ref")
    op.drop_index("ix_audit_record_client", table_name="audit_record")
    op.drop_index("ix_audit_record_at", table_name="audit_record")
    op.drop_table("audit_record")
