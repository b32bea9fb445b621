"""The outbox: per-destination FIFO messages, delivery attempts, destination leases, alerts.

Revision ID: 0003_outbox
Revises: 0002_fhir_store
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_outbox"
down_revision = "0002_fhir_store"
branch_labels = None
depends_on = None

_BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "outbox_message",
        sa.Column("id", _BIGID, primary_key=True, autoincrement=True),
        sa.Column("destination", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("manufacturer_id", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("control_id", sa.String(64), nullable=False),
        sa.Column("message_type", sa.String(32), nullable=False),
        sa.Column("content_type", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _TS, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
        sa.Column("last_outcome", sa.String(32), nullable=True),
        sa.Column("last_detail", sa.Text(), nullable=True),
        sa.Column("skip_reason", sa.Text(), nullable=True),
    )
    op.create_index("ix_outbox_destination_state_id", "outbox_message", ["destination", "state", "id"])
    op.create_index("ix_outbox_order", "outbox_message", ["manufacturer_id", "order_id"])
    op.create_table(
        "delivery_attempt",
        sa.Column("id", _BIGID, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("attempted_at", _TS, nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("ack_code", sa.String(8), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("worker_id", sa.String(128), nullable=True),
    )
    op.create_index("ix_attempt_message", "delivery_attempt", ["message_id", "id"])
    op.create_table(
        "destination_lease",
        sa.Column("destination", sa.String(200), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
    )
    op.create_table(
        "delivery_alert",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", _TS, nullable=False),
        sa.Column("destination", sa.String(200), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("delivery_alert")
    op.drop_table("destination_lease")
    op.drop_index("ix_attempt_message", table_name="delivery_attempt")
    op.drop_table("delivery_attempt")
    op.drop_index("ix_outbox_order", table_name="outbox_message")
    op.drop_index("ix_outbox_destination_state_id", table_name="outbox_message")
    op.drop_table("outbox_message")
