"""Chain of Identity claims: a DIN and an autologous lot belong to one order.

Revision ID: 0004_identity_claims
Revises: 0003_outbox
"""

from __future__ import annotations

revision = "0004_identity_claims"
down_revision = "0003_outbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
