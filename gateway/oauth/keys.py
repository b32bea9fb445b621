"""Clients' public keys: a JWKS (RFC 7517), bounded and checked once, when it is loaded.

Accepted keys: RSA of at least 2048 bits (for RS384) and EC on P-384 (for ES384).  A JWKS holding a
private key, an unsupported key type or curve, a key whose ``alg`` is not RS384/ES384, ``use`` other
than ``sig``, or two keys with one ``kid`` is refused with a message naming the key.  A set of more
than one key needs a ``kid`` on every key (an assertion selects its key by ``kid``).  JWKS URLs are
never fetched: a client registers its keys themselves (inline or as a file read at load).
Key parsing and signature checks are PyJWT's (``pyjwt[crypto]``); nothing here is hand-written crypto.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.exceptions import PyJWKError

__all__ = ["ALGORITHMS", "ClientKey", "parse_jwks", "jwks_from_text", "select_key"]

ALGORITHMS = ("RS384", "ES384")
_KTY_ALG = {"RSA": "RS384", "EC": "ES384"}
_MIN_RSA_BITS = 2048
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


@dataclass(frozen=True)
class ClientKey:
    kid: str | None
    alg: str  # RS384 (an RSA key) or ES384 (an EC P-384 key)
    key: Any  # the cryptography public key object PyJWT verifies with


def _key(jwk: Any, index: int) -> ClientKey:
    where = f"key {index}"
    if not isinstance(jwk, dict):
        raise ValueError(f"{where} is not a JSON object")
    kid = jwk.get("kid")
    if kid is not None and (not isinstance(kid, str) or not 1 <= len(kid) <= 200):
        raise ValueError(f"{where}: kid must be a string of 1 to 200 characters")
    where = f"key {index}" + (f" (kid {kid!r})" if kid else "")
    if any(member in jwk for member in _PRIVATE_MEMBERS):
        raise ValueError(f"{where} holds private key material: register the PUBLIC key only")
    kty = jwk.get("kty")
    if kty not in _KTY_ALG:
        raise ValueError(f"{where}: kty {kty!r} is not accepted (RSA for RS384, EC P-384 for ES384)")
    alg = _KTY_ALG[kty]
    if jwk.get("alg", alg) != alg:
        raise ValueError(f"{where}: alg {jwk.get('alg')!r} is not accepted for a {kty} key (only {alg})")
    if jwk.get("use", "sig") != "sig":
        raise ValueError(f"{where}: use must be 'sig'")
    if kty == "EC" and jwk.get("crv") != "P-384":
        raise ValueError(f"{where}: crv {jwk.get('crv')!r} is not accepted (ES384 needs P-384)")
    try:
        public = jwt.PyJWK(jwk, algorithm=alg).key
    except (PyJWKError, ValueError, TypeError) as exc:
        raise ValueError(f"{where} is not a valid {kty} public key: {exc}") from None
    if kty == "RSA" and public.key_size < _MIN_RSA_BITS:
        raise ValueError(f"{where}: an RSA key of {public.key_size} bits is too short "
                         f"(at least {_MIN_RSA_BITS})")
    return ClientKey(kid, alg, public)


def parse_jwks(data: Any, *, max_keys: int) -> tuple[ClientKey, ...]:
    """The keys of a JWKS object ``{"keys": [...]}``; ``ValueError`` naming the first problem."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError('a JWKS is a JSON object {"keys": [...]}')
    raw = data["keys"]
    if not raw:
        raise ValueError("the JWKS holds no key")
    if len(raw) > max_keys:
        raise ValueError(f"the JWKS holds {len(raw)} keys: at most {max_keys}")
    keys = tuple(_key(jwk, i) for i, jwk in enumerate(raw))
    kids = [k.kid for k in keys]
    if len(keys) > 1 and None in kids:
        raise ValueError("a JWKS of more than one key needs a kid on every key")
    if len(set(kids)) != len(kids):
        raise ValueError("two keys of the JWKS have the same kid")
    return keys


def jwks_from_text(text: str | bytes, *, max_bytes: int,
                   max_keys: int) -> tuple[dict[str, Any], tuple[ClientKey, ...]]:
    """A JWKS document (size checked before parsing) -> (the JSON object, its keys)."""
    size = len(text if isinstance(text, bytes) else text.encode("utf-8"))
    if size > max_bytes:
        raise ValueError(f"the JWKS is {size} bytes: at most {max_bytes}")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"the JWKS is not JSON: {exc}") from None
    return data, parse_jwks(data, max_keys=max_keys)


def select_key(keys: tuple[ClientKey, ...], kid: str | None, alg: str) -> ClientKey:
    """The key an assertion names by ``kid`` (or the client's only key when no ``kid`` is sent), which
    must be of ``alg``'s type; ``LookupError`` saying why not."""
    if kid is None:
        if len(keys) != 1:
            raise LookupError(f"the assertion has no kid and the client has {len(keys)} keys: send the kid")
        key = keys[0]
    else:
        key = next((k for k in keys if k.kid == kid), None)  # type: ignore[assignment]
        if key is None:
            raise LookupError(f"the client has no key with kid {kid[:200]!r}")
    if key.alg != alg:
        raise LookupError(f"the selected key is for {key.alg}, not {alg}")
    return key
