"""Audit trail (issue 14).

STUB created by the lead so the parts' migrations chain; the owning part fills it in.

Revision ID: 0008_audit
Revises: 0007_oauth
"""

from __future__ import annotations

revision = "0008_audit"
down_revision = "0007_oauth"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
