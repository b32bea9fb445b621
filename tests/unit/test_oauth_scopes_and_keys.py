"""Scope grammar and role limits, JWKS checks, and the configuration of OAuth clients (pure, no server)."""

from __future__ import annotations

import json

import pytest

from gateway.config import DEMO_CONFIG, load_settings
from gateway.oauth.clients import configured_clients
from gateway.oauth.keys import jwks_from_text, parse_jwks, select_key, thumbprint
from gateway.oauth.scopes import ScopeError, check_role_allows, covers, expand, parse_scopes
from tests.integration.test_oauth_support import ec_key, rsa_key


def test_expand_v2_v1_and_api_scopes():
    assert expand("system/Task.rs") == {"system/Task.r", "system/Task.s"}
    assert expand("system/*.cruds") == {f"system/*.{c}" for c in "cruds"}
    assert expand("system/Task.read") == expand("system/Task.rs")
    assert expand("system/Task.write") == {"system/Task.c", "system/Task.u", "system/Task.d"}
    assert expand("orders.write") == {"orders.write"}


@pytest.mark.parametrize("scope", ["system/Task.sr", "system/Task.rr", "system/Task.x", "system/task.rs",
                                   "user/Task.rs", "patient/*.rs", "system/Nothing.rs", "orders", "",
                                   "system/Task.rs\u200b", "openid", "system/*"])
def test_unknown_scopes(scope):
    with pytest.raises(ScopeError):
        expand(scope)


def test_parse_scopes_dedups_and_bounds():
    scopes, atoms = parse_scopes("orders.read  orders.read system/Task.s")
    assert scopes == ["orders.read", "system/Task.s"]
    assert atoms == {"orders.read", "system/Task.s"}
    with pytest.raises(ScopeError, match="at most 50"):
        parse_scopes(" ".join(f"system/{t}.{p}" for t in ("Task", "Observation", "Patient", "Provenance")
                              for p in ("r", "s", "rs", "c", "cr", "cs", "crs", "u", "ru", "us", "rus", "d",
                                        "rd", "sd", "rsd")))
    with pytest.raises(ScopeError, match="no scope"):
        parse_scopes("   ")


def test_covers_with_wildcards():
    atoms = parse_scopes("system/*.s system/Task.r")[1]
    assert covers(atoms, "system/Observation.s")
    assert covers(atoms, "system/Task.r")
    assert not covers(atoms, "system/Observation.r")
    assert not covers(atoms, "orders.read")


@pytest.mark.parametrize(("kind", "scope", "ok"), [
    ("manufacturer", "orders.write", True), ("site", "orders.write", False),
    ("admin", "orders.write", False), ("admin", "admin", True), ("site", "admin", False),
    ("site", "system/Task.c", True), ("site", "system/Procedure.c", True),
    ("site", "system/Observation.c", False), ("site", "system/*.c", False),
    ("manufacturer", "system/Task.c", False), ("admin", "system/*.rs", True),
    ("site", "system/Task.u", False),
])
def test_role_limits(kind, scope, ok):
    if ok:
        check_role_allows(kind, [scope])
    else:
        with pytest.raises(ScopeError, match="not allowed"):
            check_role_allows(kind, [scope])


def test_jwks_checks():
    key = rsa_key("a")
    [parsed] = parse_jwks(key.jwks(), max_keys=10)
    assert (parsed.kid, parsed.alg) == ("a", "RS384")
    with pytest.raises(ValueError, match="kid on every key"):
        no_kid = {k: v for k, v in key.jwk().items() if k != "kid"}
        parse_jwks({"keys": [no_kid, ec_key().jwk()]}, max_keys=10)
    with pytest.raises(ValueError, match="same kid"):
        parse_jwks({"keys": [key.jwk(), rsa_key("a").jwk()]}, max_keys=10)
    with pytest.raises(ValueError, match="at most 1"):
        parse_jwks({"keys": [key.jwk(), rsa_key("b").jwk()]}, max_keys=1)
    with pytest.raises(ValueError, match="alg 'RS256'"):
        parse_jwks({"keys": [{**key.jwk(), "alg": "RS256"}]}, max_keys=10)
    with pytest.raises(ValueError, match="kty 'oct'"):
        parse_jwks({"keys": [{"kty": "oct"}]}, max_keys=10)
    with pytest.raises(ValueError, match="private key material"):
        parse_jwks({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}, max_keys=10)
    p256 = {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}
    with pytest.raises(ValueError, match="P-384"):
        parse_jwks({"keys": [p256]}, max_keys=10)
    with pytest.raises(ValueError, match="bytes: at most 100"):
        jwks_from_text(json.dumps(key.jwks()), max_bytes=100, max_keys=10)


def test_short_rsa_keys_are_refused():
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    with pytest.raises(ValueError, match="too short"):
        parse_jwks({"keys": [RSAAlgorithm.to_jwk(small, as_dict=True)]}, max_keys=10)


def test_pem_becomes_a_one_key_jwks_with_its_thumbprint():
    key = ec_key()
    data, [parsed] = jwks_from_text(key.public_pem(), max_bytes=10_000, max_keys=10)
    assert parsed.alg == "ES384"
    assert parsed.kid == thumbprint(data["keys"][0])
    assert select_key((parsed,), None, "ES384") is parsed
    with pytest.raises(LookupError, match="for ES384, not RS384"):
        select_key((parsed,), None, "RS384")
    with pytest.raises(LookupError, match="no key with kid"):
        select_key((parsed,), "other", "ES384")


def test_configured_clients_are_checked(tmp_path):
    key = rsa_key()
    (tmp_path / "k.json").write_text(json.dumps(key.jwks()))
    fine = {"client_id": "c1", "role": "site:site-a", "scopes": "system/Task.rs",
            "jwks_file": str(tmp_path / "k.json")}
    settings = load_settings(DEMO_CONFIG, oauth_clients=[fine])
    assert configured_clients(settings)["c1"].keys[0].kid == key.kid
    with pytest.raises(ValueError, match="unknown site"):
        load_settings(DEMO_CONFIG, oauth_clients=[{**fine, "role": "site:nowhere"}])
    with pytest.raises(ValueError, match="exactly one of jwks and jwks_file"):
        load_settings(DEMO_CONFIG, oauth_clients=[{**fine, "jwks": key.jwks()}])
    with pytest.raises(ValueError, match="cannot read jwks_file"):
        load_settings(DEMO_CONFIG, oauth_clients=[{**fine, "jwks_file": str(tmp_path / "missing.json")}])
    with pytest.raises(ValueError, match="appears twice"):
        load_settings(DEMO_CONFIG, oauth_clients=[fine, fine])
    wrong_scope = load_settings(DEMO_CONFIG, oauth_clients=[{**fine, "scopes": "orders.write"}])
    with pytest.raises(ValueError, match="oauth client 'c1': scopes: .*not allowed for a site"):
        configured_clients(wrong_scope)
