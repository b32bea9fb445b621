"""Console sessions and CSRF tokens: an HMAC-signed cookie, no server-side state.

Signing in presents a bearer token once; :func:`gateway.auth.principal_for_token` resolves it and the
console keeps, in a cookie signed with HMAC-SHA256, the principal (with an OAuth access token's
scopes), the token's SHA-256 (never the token), how the token was known (``configured``, ``client`` or
``other``: an OAuth access token, issue 14), an expiry and a random nonce.  Pages need the scopes the
matching API routes need (:func:`allows`: ``orders.read`` to read orders, ``admin`` for the queues
and alerts); a static token holds every scope its role allows.  The cookie is ``HttpOnly``,
``SameSite=Strict``, ``Path=/console`` and ``Secure`` when ``public_base_url`` is https.

Signing out deletes the cookie and stores the session's nonce (``console_signed_out``, until the
session would have expired: :func:`end_session`), so a copy of the cookie is refused too, by every
process and host (``serve --processes N``).  Every request re-checks the signature and the expiry, and
(in the thread pool, see :func:`still_valid`) that the session was not signed out, that a configured
token is still configured with the same role and that an ``api_client`` token is not revoked (and
static tokens are still on): revoking a token ends its console sessions at their next request.  An
OAuth access token is checked at sign-in only; its session lasts at most
``oauth_access_token_lifetime_s`` (the token's own lifetime).

CSRF: every form carries ``csrf``, the HMAC of the session's nonce (synchroniser token, derived, so
nothing is stored); the sign-in form, before any session exists, carries the HMAC of a random
pre-session cookie (signed double submit).  The key is ``console_session_key`` when configured, else
32 random bytes drawn when the app is built (sessions then end when the server restarts).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.auth import Principal
from gateway.config import Settings
from gateway.console.tables import SignedOutRow
from gateway.store.tables import ApiClientRow

__all__ = [
    "SESSION_COOKIE",
    "SIGNIN_COOKIE",
    "ConsoleSession",
    "SessionKeys",
    "role_of",
    "scopes_of",
    "allows",
    "still_valid",
    "end_session",
    "token_kind",
]

SESSION_COOKIE = "cgt_console"
SIGNIN_COOKIE = "cgt_console_signin"
TokenKind = Literal["configured", "client", "other"]
# a cookie of ours is a few hundred bytes (more with many OAuth scopes); browsers keep 4096
_MAX_COOKIE = 3800


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode("ascii") + b"=" * (-len(text) % 4))


def scopes_of(principal: Principal) -> frozenset[str] | None:
    """The scopes an OAuth access token granted (``Principal.scopes``, issue 14); None for a static
    token, which holds every scope its role allows."""
    scopes = getattr(principal, "scopes", None)
    return frozenset(scopes) if scopes is not None else None


def allows(principal: Principal, atom: str) -> bool:
    """Whether ``principal`` holds the scope ``atom`` (``orders.read``, ``admin``): always for a
    static token; for an OAuth token, as the API decides (``Principal.has_scope``)."""
    if scopes_of(principal) is None:
        return True
    return bool(principal.has_scope(atom))  # type: ignore[attr-defined]


def role_of(principal: Principal) -> str:
    """The role string of ``principal`` (``admin``, ``site:site-a``, ``manufacturer:acme-bio``)."""
    return "admin" if principal.is_admin else f"{principal.role}:{principal.subject}"


@dataclass(frozen=True)
class ConsoleSession:
    principal: Principal
    token_sha256: str
    token_kind: TokenKind
    expires_at: int  # epoch seconds
    nonce: str


class SessionKeys:
    """Signs and checks session cookies and CSRF tokens with one key."""

    def __init__(self, key: bytes, ttl_s: int) -> None:
        if len(key) < 32:
            raise ValueError("the console session key must be at least 32 bytes")
        self._key = key
        self.ttl_s = ttl_s

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionKeys:
        configured = settings.console_session_key
        key = configured.encode("utf-8") if configured else secrets.token_bytes(32)
        return cls(key, settings.console_session_ttl_s)

    def _mac(self, purpose: str, text: str) -> str:
        return _b64(hmac.new(self._key, f"{purpose}\x00{text}".encode(), hashlib.sha256).digest())

    # ---------------------------------------------------------------- the session cookie

    def issue(self, principal: Principal, token_sha256: str, kind: TokenKind, now: datetime,
              ttl_s: int | None = None) -> str | None:
        """A signed cookie for ``principal`` (its OAuth scopes too), valid ``ttl_s`` (default: the
        console's); None when it would not fit in a cookie (a token with very many scopes)."""
        scopes = scopes_of(principal)
        body = _b64(orjson.dumps({
            "r": role_of(principal), "c": principal.client_id, "d": token_sha256, "k": kind,
            "s": sorted(scopes) if scopes is not None else None,
            "e": int(now.timestamp()) + min(ttl_s or self.ttl_s, self.ttl_s),
            "n": secrets.token_urlsafe(16)}))
        cookie = f"{body}.{self._mac('session', body)}"
        return cookie if len(cookie) <= _MAX_COOKIE else None

    def read(self, cookie: str | None, now: datetime) -> ConsoleSession | None:
        """The session in ``cookie`` if it is ours, intact and unexpired; else None."""
        if not cookie or len(cookie) > _MAX_COOKIE or cookie.count(".") != 1:
            return None
        body, mac = cookie.split(".")
        if not hmac.compare_digest(mac.encode("ascii", "replace"), self._mac("session", body).encode()):
            return None
        try:
            data = orjson.loads(_unb64(body))
            scopes = data.get("s")
            if scopes is None:
                principal = Principal.from_role(str(data["r"]), str(data["c"]))
            else:  # an OAuth access token's principal keeps its scopes (gateway.auth, issue 14)
                principal = Principal.from_role(str(data["r"]), str(data["c"]),  # type: ignore[call-arg]
                                                frozenset(str(s) for s in scopes))
            session = ConsoleSession(principal, str(data["d"]), data["k"], int(data["e"]), str(data["n"]))
        except (ValueError, KeyError, TypeError, AttributeError, orjson.JSONDecodeError):
            return None
        if session.token_kind not in ("configured", "client", "other"):
            return None
        if session.expires_at <= now.timestamp():
            return None
        return session

    # ---------------------------------------------------------------- CSRF

    def csrf_token(self, session: ConsoleSession) -> str:
        return self._mac("csrf", session.nonce)

    def signin_csrf(self, signin_nonce: str) -> str:
        return self._mac("signin", signin_nonce)

    @staticmethod
    def same(presented: str | None, expected: str) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode("utf-8", "replace"),
                                                             expected.encode())


_A = ApiClientRow.__table__  # type: ignore[attr-defined]
_ACTIVE = sa.select(_A.c.role).where(_A.c.token_sha256 == sa.bindparam("digest"),
                                     _A.c.revoked_at.is_(None)).limit(1)


def token_kind(token_sha256: str, settings: Settings, engine: Engine) -> TokenKind:
    """How a token that :func:`gateway.auth.principal_for_token` accepted is known."""
    if settings.role_for_token_hash(token_sha256) is not None:
        return "configured"
    with engine.connect() as conn:
        return "client" if conn.execute(_ACTIVE, {"digest": token_sha256}).first() is not None else "other"


_S = SignedOutRow.__table__  # type: ignore[attr-defined]
_SIGNED_OUT = sa.select(sa.literal(1)).select_from(_S).where(_S.c.nonce == sa.bindparam("nonce"))


def end_session(session: ConsoleSession, engine: Engine, now: datetime) -> None:
    """Sign-out (blocking: run it in the thread pool): every process refuses this session's cookie from
    now on, even a copy of it, until it would have expired; sessions past their expiry are forgotten."""
    expires_at = datetime.fromtimestamp(session.expires_at, UTC)
    with engine.begin() as conn:
        conn.execute(sa.delete(_S).where(_S.c.expires_at <= now))
        if conn.execute(_SIGNED_OUT, {"nonce": session.nonce}).first() is None:
            conn.execute(sa.insert(_S).values(nonce=session.nonce, expires_at=expires_at))


def still_valid(session: ConsoleSession, settings: Settings, engine: Engine) -> bool:
    """The session was not signed out, and the token behind it still grants the same role (blocking:
    run it in the thread pool).  Tokens of kind ``other`` (OAuth access tokens) were checked at sign-in;
    their sessions last at most ``oauth_access_token_lifetime_s`` (see the sign-in route)."""
    with engine.connect() as conn:
        if conn.execute(_SIGNED_OUT, {"nonce": session.nonce}).first() is not None:
            return False
    role = role_of(session.principal)
    if session.token_kind in ("configured", "client") and not getattr(settings, "static_tokens", True):
        return False  # static tokens switched off (issue 14): their sessions end too
    if session.token_kind == "configured":
        return settings.role_for_token_hash(session.token_sha256) == role
    if session.token_kind == "client":
        with engine.connect() as conn:
            row = conn.execute(_ACTIVE, {"digest": session.token_sha256}).first()
        return row is not None and row.role == role
    return True
