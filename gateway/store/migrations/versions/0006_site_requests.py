"""Site requests (issue 13).

STUB created by the lead so the parts' migrations chain; the owning part fills it in.

Revision ID: 0006_site_requests
Revises: 0005_event_retraction
"""

from __future__ import annotations

revision = "0006_site_requests"
down_revision = "0005_event_retraction"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
