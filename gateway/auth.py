"""Who is calling: bearer tokens resolve to exactly one role, and to the scopes the caller holds.

Tokens are never stored: the configuration and the ``api_client`` table hold their SHA-256, and so
does ``oauth_access_token`` for the access tokens of ``POST /oauth/token`` (``gateway.oauth``).
``current_principal`` is the FastAPI dependency every router uses (401 problem when the token is
missing or unknown); ``require_manufacturer`` adds the 403 for other roles.  With the setting
``static_tokens: false`` only OAuth access tokens are accepted (configured and ``token create``
tokens get 401).

Scopes (issue 14): a route declares the scope it needs with one line,
``dependencies=[needs("orders.write")]`` (alternatives: ``needs("orders.read", "admin")``; FHIR
interactions: ``FHIR_READ`` / ``FHIR_SEARCH``, or ``needs(fhir_scope("c"))`` for a create).  A token
lacking it gets ``403 insufficient-scope`` with ``WWW-Authenticate: Bearer error="insufficient_scope",
scope="..."``.  Static tokens hold every scope their role allows (``Principal.scopes`` is None); an
OAuth token on a route that declares no scope is refused the same way (fail closed).  The role
still governs tenancy exactly as before.

Configured tokens are resolved from a digest -> principal table built once per (immutable)
``Settings``, on the event loop: no thread hop, no database.  ``api_client`` tokens are looked up
in the database on every request (in the thread pool), never cached, so a token stops working as
soon as its row is revoked, whichever process revokes it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from gateway.config import Settings, hash_token, parse_role
from gateway.context import utc_now
from gateway.errors import AuthError, Forbidden
from gateway.oauth.scopes import covers, fhir_scope
from gateway.oauth.tokens import ACCESS_TOKEN_PREFIX, resolve_access_token
from gateway.store.tables import ApiClientRow

__all__ = [
    "Principal",
    "principal_for_token",
    "current_principal",
    "require_manufacturer",
    "require_admin",
    "create_token",
    "InsufficientScope",
    "needs",
    "fhir_scope",
    "FHIR_READ",
    "FHIR_SEARCH",
]


@dataclass(frozen=True)
class Principal:
    """``role`` with its subject: ``manufacturer:acme-bio`` -> role manufacturer, subject acme-bio."""

    role: Literal["manufacturer", "site", "admin"]
    subject: str | None  # manufacturer id or site id; None for admin
    client_id: str = ""  # who acts, for audit records: the API client's name (static tokens) or OAuth client
    # the scope atoms an OAuth access token grants (gateway.oauth.scopes); None: a static token, which
    # holds every scope its role allows
    scopes: frozenset[str] | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_oauth(self) -> bool:
        return self.scopes is not None

    def has_scope(self, atom: str) -> bool:
        """Whether this principal holds ``atom`` (``orders.write``, ``system/Task.r``...)."""
        return self.scopes is None or covers(self.scopes, atom)

    @classmethod
    def from_role(cls, role: str, client_id: str = "", scopes: frozenset[str] | None = None) -> Principal:
        kind, subject = parse_role(role)
        return cls(kind, subject, client_id, scopes)


class InsufficientScope(Forbidden):
    """403: the token is valid but lacks the scope the route needs (RFC 6750 ``insufficient_scope``)."""

    code = "insufficient-scope"
    title = "The token lacks the scope this request needs"

    def __init__(self, scopes: list[str]) -> None:
        wanted = " ".join(scopes)
        if scopes:
            super().__init__(f"This request needs the scope {wanted}: request it with the access token "
                             "(POST /oauth/token, within the client's registered scopes).")
            self.headers = {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{wanted}"'}
        else:
            super().__init__("This route declares no scope, so OAuth access tokens may not call it.")
            self.headers = {"WWW-Authenticate": 'Bearer error="insufficient_scope"'}


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


def _oauth_principal(token: str, settings: Settings, engine: Engine, now: datetime) -> Principal | None:
    grant = resolve_access_token(engine, settings, token, now)
    return None if grant is None else Principal.from_role(grant.role, grant.client_id, grant.atoms)


def _stored_or_oauth(token: str, digest: str, settings: Settings, engine: Engine,
                     now: datetime) -> Principal | None:
    """An OAuth access token's principal, else (static tokens on) an ``api_client`` row's."""
    principal = None
    if token.startswith(ACCESS_TOKEN_PREFIX):
        principal = _oauth_principal(token, settings, engine, now)
    if principal is None and settings.static_tokens:
        principal = _stored_principal(digest, engine)
    return principal


def principal_for_token(token: str, settings: Settings, engine: Engine,
                        now: datetime | None = None) -> Principal | None:
    """The principal bound to ``token`` (configured tokens first, then OAuth access tokens and
    ``api_client`` rows), or None.  Static tokens count only when ``settings.static_tokens``."""
    digest = hash_token(token)
    principal = _configured_principals(settings).get(digest) if settings.static_tokens else None
    if principal is None:
        principal = _stored_or_oauth(token, digest, settings, engine, now or utc_now())
    return principal


# Declares the bearer scheme in the OpenAPI document (the Authorize button of /docs); the header
# itself is parsed by _bearer, as before.
_BEARER_SCHEME = HTTPBearer(
    auto_error=False, scheme_name="bearer", bearerFormat="opaque",
    description="An access token from POST /oauth/token (SMART Backend Services), or a static token "
                "when the server enables them (static_tokens).")


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError("Send 'Authorization: Bearer <token>'.")
    return token


async def current_principal(
    request: Request,
    _scheme: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER_SCHEME)] = None,
) -> Principal:
    """FastAPI dependency: the caller's principal, or a 401 problem.  A configured token costs a
    hash and a dict look-up on the event loop; only ``api_client`` and OAuth tokens reach the
    database (in the thread pool).  An OAuth principal on a route that declares no scope: 403."""
    token = _bearer(request)
    context = request.app.state.context
    settings: Settings = context.settings
    digest = hash_token(token)
    principal = _configured_principals(settings).get(digest) if settings.static_tokens else None
    if principal is None:
        principal = await run_in_threadpool(_stored_or_oauth, token, digest, settings, context.engine,
                                            context.now())
    if principal is None:
        raise AuthError("The bearer token is not known, has expired or was revoked.")
    if principal.scopes is not None and not _declares_scope(request.scope.get("route")):
        raise InsufficientScope([])
    return principal


_SCOPE_CHECKS: set[Callable[..., Any]] = set()
# id(route) -> (route, declares a scope); the route is held so its id stays its own (routes are not hashable)
_DECLARES: dict[int, tuple[Any, bool]] = {}


def _declares_scope(route: Any) -> bool:
    """Whether the matched route declares a scope with :func:`needs` (cached per route)."""
    if route is None:
        return False
    entry = _DECLARES.get(id(route))
    if entry is None or entry[0] is not route:
        def walk(dependant: Dependant) -> bool:
            return any(d.call in _SCOPE_CHECKS or walk(d) for d in dependant.dependencies)

        dependant = getattr(route, "dependant", None)
        if len(_DECLARES) >= 4096:  # tests build many apps; a server has one set of routes
            _DECLARES.clear()
        entry = (route, dependant is not None and walk(dependant))
        _DECLARES[id(route)] = entry
    return entry[1]


Required = str | Callable[[Request], str | None]


def needs(*required: Required) -> Any:
    """A route dependency: the caller's token must hold one of ``required`` (scope atoms such as
    ``orders.write``, or a function of the request returning one, or None for no check).  Static
    tokens pass (their role still decides what they may do).  Use it as
    ``@router.post(..., dependencies=[needs("orders.write")])``."""

    async def check_scope(request: Request,
                          principal: Annotated[Principal, Depends(current_principal)]) -> None:
        if principal.scopes is None:
            return
        atoms = [r(request) if callable(r) else r for r in required]
        wanted = [a for a in atoms if a is not None]
        if wanted and not any(covers(principal.scopes, a) for a in wanted):
            raise InsufficientScope(wanted)

    _SCOPE_CHECKS.add(check_scope)
    return Depends(check_scope)


# FHIR interactions on the path's {resource_type}: read, vread and instance history need
# system/<Type>.r; search and type history system/<Type>.s (SMART v2).
FHIR_READ = needs(fhir_scope("r"))
FHIR_SEARCH = needs(fhir_scope("s"))


def require_manufacturer(principal: Principal) -> str:
    """The manufacturer id of a manufacturer token; 403 for site and admin tokens."""
    if principal.role != "manufacturer" or principal.subject is None:
        raise Forbidden("Only a manufacturer token may do this.")
    return principal.subject


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("Only an admin token may do this.")
    if not principal.has_scope("admin"):
        raise InsufficientScope(["admin"])


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
