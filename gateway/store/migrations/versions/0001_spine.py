"""The spine: orders, append-only events, CoI registry, safety log, API clients.

Revision ID: 0001_spine
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_spine"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cgt_order",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("manufacturer_id", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("product_code", sa.String(64), nullable=False),
        sa.Column("coi", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("last_sequence", sa.Integer(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.UniqueConstraint("manufacturer_id", "order_id", name="uq_cgt_order_manufacturer_order"),
    )
    op.create_index("ix_cgt_order_updated", "cgt_order", ["updated_at", "id"])
    op.create_index("ix_cgt_order_site_updated", "cgt_order", ["site_id", "updated_at", "id"])
    op.create_table(
        "order_event",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("order_pk", sa.Integer(), sa.ForeignKey("cgt_order.id"), nullable=False),
        sa.Column("manufacturer_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("occurred_at", _TS, nullable=False),
        sa.Column("coi", sa.String(64), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("accepted_at", _TS, nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("status_after", sa.String(32), nullable=False),
        sa.UniqueConstraint("manufacturer_id", "event_id", name="uq_order_event_manufacturer_event"),
        sa.UniqueConstraint("order_pk", "sequence", name="uq_order_event_order_sequence"),
    )
    op.create_table(
        "patient_coi",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("manufacturer_id", sa.String(64), nullable=False),
        sa.Column("coi", sa.String(64), nullable=False),
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("mrn", sa.String(64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.UniqueConstraint("manufacturer_id", "coi", name="uq_patient_coi_manufacturer_coi"),
    )
    op.create_table(
        "safety_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", _TS, nullable=False),
        sa.Column("code", sa.String(40), nullable=False),
        sa.Column("manufacturer_id", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(128), nullable=True),
        sa.Column("expected_coi", sa.String(64), nullable=True),
        sa.Column("presented_coi", sa.String(64), nullable=False),
        sa.Column("detail", sa.String(500), nullable=False),
    )
    op.create_table(
        "api_client",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(140), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.UniqueConstraint("token_sha256", name="uq_api_client_token"),
    )


def downgrade() -> None:
    op.drop_table("api_client")
    op.drop_table("safety_log")
    op.drop_table("patient_coi")
    op.drop_table("order_event")
    op.drop_index("ix_cgt_order_site_updated", table_name="cgt_order")
    op.drop_index("ix_cgt_order_updated", table_name="cgt_order")
    op.drop_table("cgt_order")
