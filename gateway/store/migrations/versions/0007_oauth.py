"""OAuth (SMART Backend Services): run-time clients, used assertion ids, access tokens (issue 14).

See :mod:`gateway.oauth.tables`: ``oauth_client`` (clients registered with ``cgt-gateway client
register``), ``oauth_jti`` (each accepted assertion's ``jti``, so a replay is refused even after a
restart) and ``oauth_access_token`` (opaque access tokens, stored as their SHA-256).

Revision ID: 0007_oauth
Revises: 0006_site_requests
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_oauth"
down_revision = "0006_site_requests"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "oauth_client",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(140), nullable=False),
        sa.Column("scopes", sa.String(2000), nullable=False),
        sa.Column("jwks", sa.Text(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
    )
    op.create_table(
        "oauth_jti",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("jti", sa.String(256), primary_key=True),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_oauth_jti_expires", "oauth_jti", ["expires_at"])
    op.create_table(
        "oauth_access_token",
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("role", sa.String(140), nullable=False),
        sa.Column("scope", sa.String(2000), nullable=False),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_oauth_access_token_expires", "oauth_access_token", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_oauth_access_token_expires", table_name="oauth_access_token")
    op.drop_table("oauth_access_token")
    op.drop_index("ix_oauth_jti_expires", table_name="oauth_jti")
    op.drop_table("oauth_jti")
    op.drop_table("oauth_client")
