"""Who is calling: bearer tokens resolve to exactly one role.

Tokens are never stored: the configuration and the ``api_client`` table hold their SHA-256.
``current_principal`` is the FastAPI dependency every router uses (401 problem when the token is
missing or unknown); ``require_manufacturer`` adds the 403 for other roles.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from fastapi import Request
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from gateway.config import Settings, hash_token, parse_role
from gateway.errors import AuthError, Forbidden
from gateway.store import ApiClientRow

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

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @classmethod
    def from_role(cls, role: str) -> Principal:
        kind, subject = parse_role(role)
        return cls(kind, subject)


def principal_for_token(token: str, settings: Settings, engine: Engine) -> Principal | None:
    """The role bound to ``token`` (configured tokens first, then ``api_client`` rows), or None."""
    digest = hash_token(token)
    role = settings.role_for_token_hash(digest)
    if role is None:
        with Session(engine) as session:
            row = session.exec(
                select(ApiClientRow).where(
                    ApiClientRow.token_sha256 == digest, ApiClientRow.revoked_at.is_(None)
                )
            ).first()  # type: ignore[union-attr]
            role = row.role if row is not None else None
    return Principal.from_role(role) if role is not None else None


def current_principal(request: Request) -> Principal:
    """FastAPI dependency: the caller's principal, or a 401 problem."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Send 'Authorization: Bearer <token>'.")
    context = request.app.state.context
    principal = principal_for_token(token.strip(), context.settings, context.engine)
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
