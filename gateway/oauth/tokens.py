"""Access tokens: opaque, random, short-lived, stored as their SHA-256 (table ``oauth_access_token``).

Opaque rather than self-contained JWTs: every use is a look-up of the hash (one indexed read, joined
with the client's row), which is what makes a revoked client's tokens stop working at once, in every
process, with no signing key to manage or rotate.  A token is ``cgt_at_`` followed by 43 URL-safe
random characters (256 bits); its row names the client, the role and the granted scopes.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.config import Settings, hash_token
from gateway.oauth.clients import Client, configured_clients
from gateway.oauth.scopes import ScopeError, parse_scopes
from gateway.oauth.tables import OAuthAccessTokenRow, OAuthClientRow

__all__ = ["ACCESS_TOKEN_PREFIX", "TokenGrant", "issue_access_token", "resolve_access_token"]

ACCESS_TOKEN_PREFIX = "cgt_at_"
_A = OAuthAccessTokenRow.__table__  # type: ignore[attr-defined]
_C = OAuthClientRow.__table__  # type: ignore[attr-defined]
_LOOKUP = (sa.select(_A.c.client_id, _A.c.role, _A.c.scope, _A.c.expires_at,
                     _C.c.client_id.label("registered"), _C.c.revoked_at)
           .select_from(_A.outerjoin(_C, _C.c.client_id == _A.c.client_id))
           .where(_A.c.token_sha256 == sa.bindparam("digest")).limit(1))


@dataclass(frozen=True)
class TokenGrant:
    """What a valid access token grants: the client, its role and the scope atoms."""

    client_id: str
    role: str
    atoms: frozenset[str]


def issue_access_token(engine: Engine, settings: Settings, client: Client, scopes: list[str],
                       now: datetime) -> tuple[str, int]:
    """A new access token for ``client`` with the granted ``scopes``; (token, lifetime in seconds)."""
    token = ACCESS_TOKEN_PREFIX + secrets.token_urlsafe(32)
    lifetime = settings.oauth_access_token_lifetime_s
    issued = int(now.timestamp())
    with engine.begin() as conn:
        conn.execute(_A.insert().values(token_sha256=hash_token(token), client_id=client.client_id,
                                        role=client.role, scope=" ".join(scopes), issued_at=issued,
                                        expires_at=issued + lifetime))
    return token, lifetime


def resolve_access_token(engine: Engine, settings: Settings, token: str, now: datetime) -> TokenGrant | None:
    """The grant of an unexpired token whose client is still configured or registered and unrevoked."""
    with engine.connect() as conn:
        row = conn.execute(_LOOKUP, {"digest": hash_token(token)}).first()
    if row is None or row.expires_at <= now.timestamp():
        return None
    if row.registered is not None:
        if row.revoked_at is not None:
            return None
    else:
        client = configured_clients(settings).get(row.client_id)
        if client is None or client.role != row.role:
            return None
    try:
        atoms = parse_scopes(row.scope)[1]
    except ScopeError:  # a scope no longer known grants nothing
        return None
    return TokenGrant(row.client_id, row.role, atoms)
