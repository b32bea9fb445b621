"""Client authentication by a signed JWT assertion (SMART Backend Services, RFC 7523 ``private_key_jwt``).

The checks, in order; each failure is ``invalid_client`` (401) with a description naming the check:

1. the assertion is a compact JWS whose header ``alg`` is RS384 or ES384 (``none``, HS*, RS256... are
   refused before any key is touched);
2. ``iss`` names a known, unrevoked client and ``sub`` equals ``iss``;
3. ``kid`` selects the key from the client's JWKS (no ``kid``: the client's only key; with several
   keys a ``kid`` is required); the key's type must match ``alg``;
4. the signature verifies (PyJWT), ``aud`` is the token endpoint URL (``{public_base_url}/oauth/token``);
5. ``exp`` is a number, not passed by more than ``oauth_clock_skew_s``, and at most 300 s +
   ``oauth_clock_skew_s`` ahead; ``nbf`` and ``iat``, when sent, are not in the future beyond the skew;
6. ``jti`` (a string of 1 to 256 characters) was never used by this client: it is inserted into
   ``oauth_jti`` (primary key ``(client_id, jti)``), so a replay fails even after a restart.

Times come from the app's clock (not PyJWT's), so tests and the server agree.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import jwt
from jwt.exceptions import InvalidTokenError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from gateway.config import Settings
from gateway.oauth.clients import Client, find_client
from gateway.oauth.keys import ALGORITHMS, select_key
from gateway.oauth.tables import OAuthAccessTokenRow, OAuthJtiRow

__all__ = ["MAX_EXP_AHEAD_S", "OAuthError", "authenticate", "token_endpoint_url"]

MAX_EXP_AHEAD_S = 300  # SMART: exp no more than five minutes in the future
_J = OAuthJtiRow.__table__  # type: ignore[attr-defined]
_A = OAuthAccessTokenRow.__table__  # type: ignore[attr-defined]
_PRUNE_EVERY_S = 60.0
_pruned: dict[str, float] = {}
_prune_lock = threading.Lock()


class OAuthError(Exception):
    """An RFC 6749 §5.2 error: ``error`` code, ``error_description``, HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


def _invalid(description: str) -> OAuthError:
    return OAuthError("invalid_client", description, 401)


def token_endpoint_url(settings: Settings) -> str:
    return settings.base_url() + "/oauth/token"


def _number(claims: dict[str, Any], name: str, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise _invalid(f"the assertion has no {name} claim")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"the assertion's {name} is not a NumericDate (seconds since 1970)")
    return float(value)


def _check_times(claims: dict[str, Any], now: float, skew: int) -> int:
    exp = _number(claims, "exp", True)
    assert exp is not None
    if exp < now - skew:
        raise _invalid("the assertion has expired (exp is in the past)")
    if exp > now + MAX_EXP_AHEAD_S + skew:
        raise _invalid(f"the assertion's exp is more than {MAX_EXP_AHEAD_S} s ahead")
    for name in ("nbf", "iat"):
        value = _number(claims, name, False)
        if value is not None and value > now + skew:
            raise _invalid(f"the assertion's {name} is in the future")
    return int(exp)


def _prune(engine: Engine, settings: Settings, now: float) -> None:
    """Delete expired jti rows and access tokens, at most once a minute per process and database."""
    key = engine.url.render_as_string(hide_password=True)
    with _prune_lock:
        if now - _pruned.get(key, 0.0) < _PRUNE_EVERY_S:
            return
        _pruned[key] = now
    cut = int(now) - settings.oauth_clock_skew_s - settings.oauth_jti_retention_s
    with engine.begin() as conn:
        conn.execute(_J.delete().where(_J.c.expires_at < cut))
        conn.execute(_A.delete().where(_A.c.expires_at < cut))


def _record_jti(engine: Engine, client_id: str, jti: str, exp: int) -> None:
    try:
        with engine.begin() as conn:
            conn.execute(_J.insert().values(client_id=client_id, jti=jti, expires_at=exp))
    except IntegrityError:
        raise _invalid("the assertion's jti was already used: make a new assertion with a new jti") from None


def authenticate(engine: Engine, settings: Settings, assertion: str, now: datetime) -> Client:
    """The client a valid assertion authenticates (its jti is consumed); ``OAuthError`` otherwise."""
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except InvalidTokenError:
        raise _invalid("client_assertion is not a compact JWS (header.payload.signature)") from None
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise _invalid(f"the assertion's alg {str(alg)[:20]!r} is not accepted: sign with RS384 or ES384")
    iss = unverified.get("iss")
    if not isinstance(iss, str) or not iss:
        raise _invalid("the assertion has no iss (the client id)")
    if unverified.get("sub") != iss:
        raise _invalid("the assertion's sub must equal its iss (the client id)")
    client = find_client(engine, settings, iss)
    if client is None:
        raise _invalid(f"no client {iss[:64]!r} is registered")
    if client.revoked:
        raise _invalid(f"client {iss!r} is revoked")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise _invalid("the assertion's kid is not a string")
    try:
        key = select_key(client.keys, kid, alg)
    except LookupError as exc:
        raise _invalid(str(exc)) from None
    audience = token_endpoint_url(settings)
    try:
        claims = jwt.decode(assertion, key.key, algorithms=[alg], audience=audience, issuer=iss,
                            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                                     "require": ["iss", "sub", "aud", "exp", "jti"]})
    except jwt.InvalidAudienceError:
        raise _invalid(f"the assertion's aud must be the token endpoint URL {audience}") from None
    except jwt.InvalidSignatureError:
        raise _invalid("the assertion's signature does not verify with the client's key") from None
    except jwt.MissingRequiredClaimError as exc:
        raise _invalid(f"the assertion has no {exc.claim} claim") from None
    except InvalidTokenError as exc:
        raise _invalid(f"the assertion is not valid: {str(exc)[:200]}") from None
    clock = now.timestamp()
    exp = _check_times(claims, clock, settings.oauth_clock_skew_s)
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 1 <= len(jti) <= 256:
        raise _invalid("the assertion's jti must be a string of 1 to 256 characters")
    _record_jti(engine, client.client_id, jti, exp)
    _prune(engine, settings, clock)
    return client
