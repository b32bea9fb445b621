"""Event retraction: an accepted event may be marked entered-in-error.

``order_event.retracted_at`` / ``retraction_reason`` mark a retracted event (the row itself stays);
``cgt_order.history_revision`` counts the order's retractions, so a cached history (see
``gateway.intake.order_history``) taken before a retraction is never mistaken for the current one.

Revision ID: 0005_event_retraction
Revises: 0004_identity_claims
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_event_retraction"
down_revision = "0004_identity_claims"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("order_event", sa.Column("retracted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("order_event", sa.Column("retraction_reason", sa.String(1000), nullable=True))
    op.add_column("cgt_order", sa.Column("history_revision", sa.Integer(), nullable=False,
                                         server_default="0"))


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (PostgreSQL; SQLite 3.35+): batch mode would recreate cgt_order,
    # which SQLite's enforced foreign keys (order_event -> cgt_order) refuse once orders exist.
    op.execute("ALTER TABLE cgt_order DROP COLUMN history_revision")
    op.execute("ALTER TABLE order_event DROP COLUMN retraction_reason")
    op.execute("ALTER TABLE order_event DROP COLUMN retracted_at")
