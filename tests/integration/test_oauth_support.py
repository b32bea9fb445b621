"""Keys, JWKS and client assertions for the OAuth tests (keys are generated here, never stored)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from gateway.oauth.routes import ASSERTION_TYPE

TOKEN_URL = "http://testserver/oauth/token"


@dataclass
class Key:
    private: Any
    kid: str
    alg: str

    def jwk(self) -> dict[str, Any]:
        algorithm = RSAAlgorithm if self.alg == "RS384" else ECAlgorithm
        jwk = algorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk()]}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)

    def private_pem(self) -> bytes:
        return self.private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())


def rsa_key(kid: str = "rsa-1") -> Key:
    return Key(rsa.generate_private_key(public_exponent=65537, key_size=2048), kid, "RS384")


def ec_key(kid: str = "ec-1") -> Key:
    return Key(ec.generate_private_key(ec.SECP384R1()), kid, "ES384")


def claims(client_id: str, *, now: float | None = None, **overrides: Any) -> dict[str, Any]:
    now = time.time() if now is None else now
    body: dict[str, Any] = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "exp": int(now) + 240,
                            "jti": str(uuid.uuid4())}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def assertion(key: Key, client_id: str, *, alg: str | None = None, kid: str | None = "same",
              now: float | None = None, **overrides: Any) -> str:
    headers = {} if kid is None else {"kid": key.kid if kid == "same" else kid}
    return jwt.encode(claims(client_id, now=now, **overrides), key.private, algorithm=alg or key.alg,
                      headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_assertion(client_id: str, kid: str) -> str:
    """``alg: none``: header and claims, empty signature."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    return f"{header}.{_b64(json.dumps(claims(client_id)).encode())}."


def hs256_with_public_key(key: Key, client_id: str) -> str:
    """The classic confusion attack: HS256 with the client's PUBLIC key (PEM) as the HMAC secret."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
    payload = _b64(json.dumps(claims(client_id)).encode())
    signature = hmac.new(key.public_pem(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def token_form(signed: str, scope: str = "system/*.rs orders.read",
               **overrides: str | None) -> dict[str, str]:
    form: dict[str, str | None] = {"grant_type": "client_credentials",
                                   "client_assertion_type": ASSERTION_TYPE,
                                   "client_assertion": signed, "scope": scope}
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
