"""Clients' public keys: a JWKS (RFC 7517), bounded and checked once, when it is loaded.

Accepted keys: RSA of at least 2048 bits (for RS384) and EC on P-384 (for ES384).  A JWKS holding a
private key, an unsupported key type or curve, a key whose ``alg`` is not RS384/ES384, ``use`` other
than ``sig``, or two keys with one ``kid`` is refused with a message naming the key.  A set of more
than one key needs a ``kid`` on every key (an assertion selects its key by ``kid``).  JWKS URLs are
never fetched: a client registers its keys themselves (inline or as a file read at load).
A PEM public key (``openssl pkey -pubout``) is accepted wherever a JWKS is: it becomes a JWKS of
one key whose ``kid`` is the key's RFC 7638 thumbprint.
Key parsing and signature checks are PyJWT's (``pyjwt[crypto]``); nothing here is hand-written crypto.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from jwt.exceptions import PyJWKError

__all__ = ["ALGORITHMS", "ClientKey", "parse_jwks", "jwks_from_text", "jwks_of", "thumbprint", "select_key"]

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


def thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256 of the required members, base64url): a stable ``kid``."""
    members = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def _pem_jwks(text: bytes) -> dict[str, Any]:
    try:
        public = load_pem_public_key(text)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"the PEM text is not a public key: {exc}") from None
    if isinstance(public, rsa.RSAPublicKey):
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        raise ValueError("the PEM public key is neither RSA nor EC")
    jwk = {k: v for k, v in jwk.items() if k in ("kty", "n", "e", "crv", "x", "y")}
    return {"keys": [{**jwk, "kid": thumbprint(jwk), "use": "sig"}]}


def jwks_from_text(text: str | bytes, *, max_bytes: int,
                   max_keys: int) -> tuple[dict[str, Any], tuple[ClientKey, ...]]:
    """A JWKS document, or a PEM public key (size checked before parsing) -> (the JWKS, its keys)."""
    raw = text if isinstance(text, bytes) else text.encode("utf-8")
    if len(raw) > max_bytes:
        raise ValueError(f"the JWKS is {len(raw)} bytes: at most {max_bytes}")
    if raw.lstrip().startswith(b"-----BEGIN"):
        data = _pem_jwks(raw.strip())
    else:
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"the JWKS is neither JSON nor a PEM public key: {exc}") from None
    return data, parse_jwks(data, max_keys=max_keys)


def jwks_of(document: dict[str, Any] | str, *, max_bytes: int,
            max_keys: int) -> tuple[dict[str, Any], tuple[ClientKey, ...]]:
    """A configured ``jwks``: a JWKS mapping, or the text of a JWKS or PEM public key."""
    if isinstance(document, str):
        return jwks_from_text(document, max_bytes=max_bytes, max_keys=max_keys)
    return document, parse_jwks(document, max_keys=max_keys)


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
