"""OAuth clients: those of the configuration file (``oauth_clients:``) and those registered at run time
(``cgt-gateway client register``, table ``oauth_client``).

A client has a role (``manufacturer:<id>``, ``site:<id>``, ``admin``: it governs tenancy exactly as a
static token's does), the scopes it may request and its public keys.  Configured clients are checked
once per ``Settings`` (the app refuses to start on a bad one, naming it); registered clients are read
from the database on every use, never cached, so a revocation takes effect at once in every process.
A configured client is revoked by removing it from the file (and restarting); a registered one with
``cgt-gateway client revoke``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.config import Settings, parse_role
from gateway.oauth.keys import ClientKey, jwks_from_text, jwks_of
from gateway.oauth.scopes import ScopeError, check_role_allows, parse_scopes
from gateway.oauth.tables import OAuthClientRow
from gateway.store.tables import ApiClientRow

__all__ = [
    "Client",
    "configured_clients",
    "check_configured_clients",
    "find_client",
    "register_client",
    "list_clients",
    "revoke_client",
    "revoke_static_token",
]

_C = OAuthClientRow.__table__  # type: ignore[attr-defined]
_T = ApiClientRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Client:
    client_id: str
    role: str
    scopes: tuple[str, ...]  # as registered
    atoms: frozenset[str]  # the scopes expanded (gateway.oauth.scopes)
    keys: tuple[ClientKey, ...]
    source: Literal["config", "registered"]
    created_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def _client(client_id: str, role: str, scopes_text: str, jwks: Any, *, max_keys: int, max_bytes: int,
            source: Literal["config", "registered"], created_at: datetime | None = None,
            revoked_at: datetime | None = None) -> Client:
    """A checked client; ``ValueError`` naming what is wrong (role, a scope, a key)."""
    kind, _subject = parse_role(role)
    try:
        scopes, atoms = parse_scopes(scopes_text)
        check_role_allows(kind, scopes)
    except ScopeError as exc:
        raise ValueError(f"scopes: {exc}") from None
    try:
        keys = jwks_of(jwks, max_bytes=max_bytes, max_keys=max_keys)[1]
    except ValueError as exc:
        raise ValueError(f"jwks: {exc}") from None
    return Client(client_id, role, tuple(scopes), atoms, keys, source, created_at, revoked_at)


_CONFIGURED: dict[int, tuple[Settings, dict[str, Client]]] = {}


def configured_clients(settings: Settings) -> dict[str, Client]:
    """The configuration file's clients by id, checked once per (immutable) ``Settings``."""
    entry = _CONFIGURED.get(id(settings))
    if entry is None or entry[0] is not settings:
        if len(_CONFIGURED) >= 16:  # tests build many settings; a server has one
            _CONFIGURED.clear()
        clients: dict[str, Client] = {}
        for config in settings.oauth_clients:
            try:
                clients[config.client_id] = _client(config.client_id, config.role, config.scopes, config.jwks,
                                                    max_keys=settings.oauth_max_jwks_keys,
                                                    max_bytes=settings.oauth_max_jwks_bytes, source="config")
            except ValueError as exc:
                raise ValueError(f"oauth client {config.client_id!r}: {exc}") from None
        entry = (settings, clients)
        _CONFIGURED[id(settings)] = entry
    return entry[1]


def check_configured_clients(settings: Settings) -> None:
    """Raise ``ValueError`` naming the first configured client whose keys or scopes are invalid."""
    configured_clients(settings)


def _from_row(row: Any, settings: Settings) -> Client:
    return _client(row.client_id, row.role, row.scopes, json.loads(row.jwks),
                   max_keys=settings.oauth_max_jwks_keys, max_bytes=settings.oauth_max_jwks_bytes,
                   source="registered", created_at=row.created_at, revoked_at=row.revoked_at)


def find_client(engine: Engine, settings: Settings, client_id: str) -> Client | None:
    """The client with this id (configured first, then registered; a revoked one is returned flagged),
    or None.  Registered clients are read from the database each time."""
    client = configured_clients(settings).get(client_id)
    if client is not None or len(client_id) > 64:
        return client
    with engine.connect() as conn:
        row = conn.execute(sa.select(_C).where(_C.c.client_id == client_id)).first()
    return None if row is None else _from_row(row, settings)


def register_client(engine: Engine, settings: Settings, *, role: str, jwks_text: str | bytes, scopes: str,
                    now: datetime) -> Client:
    """Check and store a new client with a random id; ``ValueError`` naming what is wrong."""
    kind, subject = parse_role(role)
    known = {"manufacturer": settings.manufacturer_ids(), "site": settings.site_ids()}.get(kind)
    if known is not None and subject not in known:
        raise ValueError(f"{role!r} names an unknown {kind}")
    data, _keys = jwks_from_text(jwks_text, max_bytes=settings.oauth_max_jwks_bytes,
                                 max_keys=settings.oauth_max_jwks_keys)
    client_id = secrets.token_hex(16)
    client = _client(client_id, role, scopes, data, max_keys=settings.oauth_max_jwks_keys,
                     max_bytes=settings.oauth_max_jwks_bytes, source="registered", created_at=now)
    with engine.begin() as conn:
        conn.execute(_C.insert().values(client_id=client_id, role=role, scopes=" ".join(client.scopes),
                                        jwks=json.dumps(data, separators=(",", ":")), created_at=now))
    return client


def list_clients(engine: Engine, settings: Settings) -> list[Client]:
    """Configured clients, then registered ones (oldest first), revoked ones included."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(_C).order_by(_C.c.created_at, _C.c.client_id)).all()
    return [*configured_clients(settings).values(), *(_from_row(row, settings) for row in rows)]


def revoke_client(engine: Engine, settings: Settings, client_id: str, now: datetime) -> bool:
    """Revoke a registered client (its tokens stop working at once); False when it already was.
    ``LookupError`` for an unknown id, ``ValueError`` for a configured client."""
    if client_id in configured_clients(settings):
        raise ValueError(f"client {client_id!r} is configured in {settings.config}: remove it from "
                         "oauth_clients and restart to revoke it")
    with engine.begin() as conn:
        row = conn.execute(sa.select(_C.c.revoked_at).where(_C.c.client_id == client_id)).first()
        if row is None:
            raise LookupError(f"no client {client_id!r}")
        if row.revoked_at is not None:
            return False
        conn.execute(_C.update().where(_C.c.client_id == client_id).values(revoked_at=now))
    return True


def revoke_static_token(engine: Engine, name: str, now: datetime) -> int:
    """Revoke the unrevoked ``token create --name NAME`` tokens; how many were revoked."""
    with engine.begin() as conn:
        result = conn.execute(_T.update().where(_T.c.name == name, _T.c.revoked_at.is_(None))
                              .values(revoked_at=now))
    return int(result.rowcount or 0)
