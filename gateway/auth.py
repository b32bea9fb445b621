"""Who is calling: bearer tokens resolve to exactly one role.

Tokens are never stored: the configuration and the ``api_client`` table hold their SHA-256.
``current_principal`` is the FastAPI dependency every router uses (401 problem when the token is
missing or unknown); ``require_manufacturer`` adds the 403 for other roles.

Configured tokens are resolved from a digest -> principal table built once per (immutable)
``Settings``, on the event loop: no thread hop, no database.  ``api_client`` tokens are looked up
in the database on every request (in the thread pool), never cached, so a token stops working as
soon as its row is revoked, whichever process revokes it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from fastapi import Request
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from gateway.config import Settings, hash_token, parse_role
from gateway.errors import AuthError, Forbidden
from gateway.store.tables import ApiClientRow

__all__ = [
    "Principal",
    "principal_for_token",
    "current_principal",
    "require_manufacturer",
    "require_admin",
    "create_token",
]


@dataclass(frozen=True)
class Principal:
    """``role`` with its subject: ``manufacturer:acme-bio`` -> role manufacturer, subject acme-bio."""

    role: Literal["manufacturer", "site", "admin"]
    subject: str | None  # manufacturer id or site id; None for admin
    client_id: str = ""  # who acts, for audit records: the API client's name (static tokens) or client id

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @classmethod
    def from_role(cls, role: str, client_id: str = "") -> Principal:
        kind, subject = parse_role(role)
        return cls(kind, subject, client_id)


_A = ApiClientRow.__table__  # type: ignore[attr-defined]
_ACTIVE_ROLE = sa.select(_A.c.role, _A.c.name).where(_A.c.token_sha256 == sa.bindparam("digest"),
                                          _A.c.revoked_at.is_(None)).limit(1)
# id(settings) -> (settings, digest -> principal); the settings object is held so its id stays its own
_CONFIGURED: dict[int, tuple[Settings, dict[str, Principal]]] = {}


def _configured_principals(settings: Settings) -> dict[str, Principal]:
    """The configured tokens' principals by digest (``Settings`` is frozen: built once per object)."""
    entry = _CONFIGURED.get(id(settings))
    if entry is None or entry[0] is not settings:
        if len(_CONFIGURED) >= 16:  # tests build many settings; a server has one
            _CONFIGURED.clear()
        entry = (settings, {c.token_sha256: Principal.from_role(c.role, c.name)
                            for c in settings.api_clients})
        _CONFIGURED[id(settings)] = entry
    return entry[1]


def _stored_principal(digest: str, engine: Engine) -> Principal | None:
    """The principal of an unrevoked ``api_client`` row with this digest (one indexed read)."""
    with engine.connect() as conn:
        row = conn.execute(_ACTIVE_ROLE, {"digest": digest}).first()
    return Principal.from_role(row.role, row.name) if row is not None else None


def principal_for_token(token: str, settings: Settings, engine: Engine) -> Principal | None:
    """The role bound to ``token`` (configured tokens first, then ``api_client`` rows), or None."""
    digest = hash_token(token)
    principal = _configured_principals(settings).get(digest)
    return principal if principal is not None else _stored_principal(digest, engine)


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError("Send 'Authorization: Bearer <token>'.")
    return token


async def current_principal(request: Request) -> Principal:
    """FastAPI dependency: the caller's principal, or a 401 problem.  A configured token costs a
    hash and a dict look-up on the event loop; only ``api_client`` tokens reach the database
    (in the thread pool)."""
    token = _bearer(request)
    context = request.app.state.context
    digest = hash_token(token)
    principal = _configured_principals(context.settings).get(digest)
    if principal is None:
        principal = await run_in_threadpool(_stored_principal, digest, context.engine)
    if principal is None:
        raise AuthError("The bearer token is not known.")
    return principal


def require_manufacturer(principal: Principal) -> str:
    """The manufacturer id of a manufacturer token; 403 for site and admin tokens."""
    if principal.role != "manufacturer" or principal.subject is None:
        raise Forbidden("Only a manufacturer token may do this.")
    return principal.subject


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("Only an admin token may do this.")


def create_token(engine: Engine, settings: Settings, *, role: str, name: str, now: datetime) -> str:
    """Create a new random token for ``role``, store only its hash, and return it (shown once)."""
    kind, subject = parse_role(role)
    known = {"manufacturer": settings.manufacturer_ids(), "site": settings.site_ids()}.get(kind)
    if known is not None and subject not in known:
        raise ValueError(f"{role!r} names an unknown {kind}")
    token = "cgt_" + secrets.token_urlsafe(32)
    with Session(engine) as session:
        session.add(ApiClientRow(name=name, role=role, token_sha256=hash_token(token), created_at=now))
        session.commit()
    return token
