"""``console_signed_out``: the console sessions signed out, kept until they would have expired.

A session cookie is signed, not stored; signing out must refuse a copy of the cookie on every server
process and host (``serve --processes N``, several hosts), so the sign-out is a row every process reads
(:mod:`gateway.console.session`), no longer a set in one process's memory.

Revision ID: 0013_console_signed_out
Revises: 0012_site_order_number_index
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_console_signed_out"
down_revision = "0012_site_order_number_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_signed_out",
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_console_signed_out_expires_at", "console_signed_out", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_console_signed_out_expires_at", table_name="console_signed_out")
    op.drop_table("console_signed_out")
