"""OAuth clients, JWT ids, access tokens (issue 14).

STUB created by the lead so the parts' migrations chain; the owning part fills it in.

Revision ID: 0007_oauth
Revises: 0006_site_requests
"""

from __future__ import annotations

revision = "0007_oauth"
down_revision = "0006_site_requests"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
