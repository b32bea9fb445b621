"""FHIR Subscriptions (issue 16): ``fhir_subscription`` and ``fhir_subscription_event``
(see :mod:`gateway.store.subscription_tables`).

(The lead re-chains it after 0009_console at merge time: do not change revision or down_revision.)

Revision ID: 0010_subscriptions
Revises: 0009_console
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_subscriptions"
down_revision = "0009_console"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "fhir_subscription",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("topic", sa.String(32), nullable=False),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("endpoint", sa.String(2048), nullable=False),
        sa.Column("payload", sa.String(64), nullable=False),
        sa.Column("content", sa.String(16), nullable=False),
        sa.Column("heartbeat_s", sa.Integer(), nullable=True),
        sa.Column("timeout_s", sa.Integer(), nullable=False),
        sa.Column("max_count", sa.Integer(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(1000), nullable=False),
        sa.Column("error", sa.String(1000), nullable=True),
        sa.Column("events_since_start", sa.BigInteger(), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("next_heartbeat_at", _TS, nullable=True),
    )
    op.create_index("ix_fhir_subscription_site_status", "fhir_subscription", ["site_id", "status"])
    op.create_index("ix_fhir_subscription_heartbeat", "fhir_subscription", ["status", "next_heartbeat_at"])
    op.create_table(
        "fhir_subscription_event",
        sa.Column("subscription_id", sa.String(64), primary_key=True),
        sa.Column("event_number", sa.BigInteger(), primary_key=True),
        sa.Column("topic", sa.String(32), nullable=False),
        sa.Column("focus_type", sa.String(64), nullable=False),
        sa.Column("focus_id", sa.String(64), nullable=False),
        sa.Column("focus_version", sa.Integer(), nullable=False),
        sa.Column("occurred_at", _TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("fhir_subscription_event")
    op.drop_index("ix_fhir_subscription_heartbeat", "fhir_subscription")
    op.drop_index("ix_fhir_subscription_site_status", "fhir_subscription")
    op.drop_table("fhir_subscription")
