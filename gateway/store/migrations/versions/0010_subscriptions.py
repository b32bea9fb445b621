"""FHIR Subscriptions (issue 16).

STUB created by the lead so the parts' migrations chain; the owning part fills it in. (The lead
re-chains it after 0009_console at merge time: do not change revision or down_revision.)

Revision ID: 0010_subscriptions
Revises: 0009_console
"""

from __future__ import annotations

revision = "0010_subscriptions"
down_revision = "0009_console"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
