"""The OAuth tables (SQLModel; migration ``0007_oauth``).

``oauth_client``: clients registered at run time (``cgt-gateway client register``); clients of the
configuration file (``oauth_clients:``) are not stored.  A client is never deleted, only revoked.
``oauth_jti``: every accepted assertion's ``jti`` per client, unique, kept until its ``exp`` (plus the
clock skew and ``oauth_jti_retention_s``), so a replay is refused even after a restart.
``oauth_access_token``: issued access tokens, opaque; only their SHA-256 is stored.
Expiry times are UNIX seconds (integers compare the same on every backend).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

__all__ = ["OAuthClientRow", "OAuthJtiRow", "OAuthAccessTokenRow"]


def _str(length: int, **kw: Any) -> Any:
    return Field(sa_type=sa.String(length), **kw)


class OAuthClientRow(SQLModel, table=True):
    """A client registered at run time: its role, the scopes it may request and its public JWKS."""

    __tablename__ = "oauth_client"

    client_id: str = Field(sa_type=sa.String(64), primary_key=True)
    role: str = _str(140)
    scopes: str = _str(2000)  # space-separated, as registered
    jwks: str = Field(sa_type=sa.Text())  # the public JWKS (JSON)
    created_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    revoked_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True), nullable=True)


class OAuthJtiRow(SQLModel, table=True):
    """One accepted client assertion: ``(client_id, jti)`` is the primary key, so a replay fails to insert."""

    __tablename__ = "oauth_jti"
    __table_args__ = (sa.Index("ix_oauth_jti_expires", "expires_at"),)

    client_id: str = Field(sa_type=sa.String(64), primary_key=True)
    jti: str = Field(sa_type=sa.String(256), primary_key=True)
    expires_at: int = Field(sa_type=sa.BigInteger())  # the assertion's exp (UNIX seconds)


class OAuthAccessTokenRow(SQLModel, table=True):
    """An issued access token (opaque): its SHA-256, the client, role and granted scopes, its expiry."""

    __tablename__ = "oauth_access_token"
    __table_args__ = (sa.Index("ix_oauth_access_token_expires", "expires_at"),)

    token_sha256: str = Field(sa_type=sa.String(64), primary_key=True)
    client_id: str = _str(64)
    role: str = _str(140)
    scope: str = _str(2000)  # the granted scopes, space-separated
    issued_at: int = Field(sa_type=sa.BigInteger())
    expires_at: int = Field(sa_type=sa.BigInteger())
