"""Event retraction: an accepted event may be marked entered-in-error.

Revision ID: 0005_event_retraction
Revises: 0004_identity_claims
"""

from __future__ import annotations

revision = "0005_event_retraction"
down_revision = "0004_identity_claims"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
