"""SMART Backend Services: POST /oauth/token with signed JWT assertions (RSA and EC keys made here),
the access token on /fhir and /v1, every refusal with its exact RFC 6749 error, scopes enforced
(403 insufficient_scope), revocation, replay after a restart, and ``static_tokens: false``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

import pytest
from fastapi import Depends
from fastapi.testclient import TestClient

from gateway.auth import Principal, current_principal, principal_for_token
from gateway.bootstrap import create_app
from gateway.config import DEMO_CONFIG, Settings, load_settings
from gateway.oauth.clients import register_client, revoke_client
from tests.conftest import ACME, ADMIN, SITE_A, order_body
from tests.integration.test_oauth_support import (
    Key,
    assertion,
    bearer,
    ec_key,
    hs256_with_public_key,
    rsa_key,
    token_form,
    unsigned_assertion,
)

ACME_SCOPES = "orders.read orders.write system/*.rs"
SITE_SCOPES = "orders.read system/Task.rs system/Observation.rs"


@pytest.fixture(scope="module")
def keys() -> dict[str, Key]:
    return {"acme": rsa_key("acme-rsa"), "site": ec_key("site-ec"), "admin": rsa_key("ops-rsa"),
            "other_rsa": rsa_key("acme-rsa"), "other_ec": ec_key("site-ec")}


def make_settings(engine, keys: dict[str, Key], **overrides) -> Settings:
    clients = [
        {"client_id": "acme-system", "role": "manufacturer:acme-bio", "scopes": ACME_SCOPES,
         "jwks": keys["acme"].jwks()},
        {"client_id": "site-a-ehr", "role": "site:site-a", "scopes": SITE_SCOPES,
         "jwks": keys["site"].jwks()},
        {"client_id": "ops", "role": "admin", "scopes": "admin orders.read system/*.rs",
         "jwks": keys["admin"].jwks()},
    ]
    return load_settings(DEMO_CONFIG, database_url=engine.url.render_as_string(hide_password=False),
                         public_base_url="http://testserver", oauth_clients=clients, **overrides)


@pytest.fixture
def oauth_settings(engine, keys) -> Settings:
    return make_settings(engine, keys)


@pytest.fixture
def api(oauth_settings, engine, clock) -> Iterator[TestClient]:
    with TestClient(create_app(oauth_settings, engine=engine, now=clock), raise_server_exceptions=False) as c:
        yield c


def get_token(api: TestClient, key: Key, client_id: str, scope: str) -> str:
    response = api.post("/oauth/token", data=token_form(assertion(key, client_id), scope))
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def refused(response, status: int, error: str, words: str = "") -> dict:
    """An RFC 6749 error and nothing else: no token, no caching."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    assert words.lower() in body["error_description"].lower()
    assert response.headers["cache-control"] == "no-store"
    return body


# --------------------------------------------------------------------------- the happy paths

def test_rsa_assertion_gets_a_token_that_works_on_fhir_and_v1(api, keys):
    response = api.post("/oauth/token", data=token_form(assertion(keys["acme"], "acme-system"),
                                                        "orders.write orders.read system/Task.rs"))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 300
    assert body["scope"] == "orders.write orders.read system/Task.rs"
    token = bearer(body["access_token"])
    assert api.post("/v1/orders", json=order_body("OA-1"), headers=token).status_code == 201
    assert [o["order_id"] for o in api.get("/v1/orders", headers=token).json()["items"]] == ["OA-1"]
    bundle = api.get("/fhir/Task", headers=token)
    assert bundle.status_code == 200
    assert len(bundle.json()["entry"]) == 1


def test_ec_assertion_gets_a_site_token_scoped_to_its_site(api, keys):
    assert api.post("/v1/orders", json=order_body("OA-2"), headers=ACME).status_code == 201
    token = bearer(get_token(api, keys["site"], "site-a-ehr", "system/Task.rs orders.read"))
    tasks = api.get("/fhir/Task", headers=token).json()["entry"]
    assert len(tasks) == 1
    task_id = tasks[0]["resource"]["id"]
    assert api.get(f"/fhir/Task/{task_id}", headers=token).status_code == 200
    assert api.head(f"/fhir/Task/{task_id}", headers=token).status_code == 200
    assert api.get("/v1/orders/OA-2", headers=token).status_code == 200
    # the role still governs tenancy: site-a may not write, whatever it asks for
    assert api.post("/v1/orders", json=order_body("OA-3"), headers=token).status_code == 403


def test_the_principal_names_the_oauth_client(api, keys, oauth_settings, engine):
    token = get_token(api, keys["site"], "site-a-ehr", "system/Task.rs")
    principal = principal_for_token(token, oauth_settings, engine)
    assert principal is not None
    assert (principal.role, principal.subject, principal.client_id) == ("site", "site-a", "site-a-ehr")
    assert principal.scopes == frozenset({"system/Task.r", "system/Task.s"})


def test_no_kid_uses_the_clients_only_key(api, keys):
    response = api.post("/oauth/token", data=token_form(assertion(keys["acme"], "acme-system", kid=None),
                                                        "orders.read"))
    assert response.status_code == 200, response.text


def test_a_registered_client_with_a_pem_key(api, keys, oauth_settings, engine):
    key = ec_key("ignored")
    client = register_client(engine, oauth_settings, role="manufacturer:nova-cell",
                             jwks_text=key.public_pem(), scopes="orders.read system/*.rs",
                             now=datetime.now(UTC))
    token = api.post("/oauth/token", data=token_form(assertion(key, client.client_id, kid=None),
                                                     "system/*.rs"))
    assert token.status_code == 200, token.text
    assert api.get("/fhir/Task", headers=bearer(token.json()["access_token"])).status_code == 200
    assert client.keys[0].kid  # the RFC 7638 thumbprint
    by_kid = api.post("/oauth/token", data=token_form(assertion(key, client.client_id,
                                                                kid=client.keys[0].kid), "orders.read"))
    assert by_kid.status_code == 200


# --------------------------------------------------------------------------- assertion refusals

def test_wrong_audience(api, keys):
    bad = assertion(keys["acme"], "acme-system", aud="http://testserver/token")
    refused(api.post("/oauth/token", data=token_form(bad)), 401, "invalid_client", "aud")


def test_expired(api, keys):
    bad = assertion(keys["acme"], "acme-system", exp=int(time.time()) - 120)
    refused(api.post("/oauth/token", data=token_form(bad)), 401, "invalid_client", "expired")


def test_exp_too_far_ahead(api, keys):
    bad = assertion(keys["acme"], "acme-system", exp=int(time.time()) + 600)
    refused(api.post("/oauth/token", data=token_form(bad)), 401, "invalid_client", "300 s ahead")


@pytest.mark.parametrize("claim", ["exp", "jti", "iss"])
def test_missing_claims(api, keys, claim):
    bad = assertion(keys["acme"], "acme-system", **{claim: None})
    refused(api.post("/oauth/token", data=token_form(bad)), 401, "invalid_client")


def test_sub_must_equal_iss(api, keys):
    bad = assertion(keys["acme"], "acme-system", sub="someone-else")
    refused(api.post("/oauth/token", data=token_form(bad)), 401, "invalid_client", "sub")


def test_unknown_client(api, keys):
    refused(api.post("/oauth/token", data=token_form(assertion(keys["acme"], "nobody"))), 401,
            "invalid_client", "no client")


def test_reused_jti_is_refused_also_after_a_restart(api, keys, oauth_settings, engine, clock):
    once = assertion(keys["acme"], "acme-system")
    assert api.post("/oauth/token", data=token_form(once)).status_code == 200
    refused(api.post("/oauth/token", data=token_form(once)), 401, "invalid_client", "jti")
    # a new app (a restart) on the same database still knows the jti
    with TestClient(create_app(make_settings(engine, keys), engine=engine, now=clock)) as restarted:
        refused(restarted.post("/oauth/token", data=token_form(once)), 401, "invalid_client", "jti")
    # the same jti from another client is its own
    jti = "shared-jti-1"
    first = api.post("/oauth/token", data=token_form(assertion(keys["acme"], "acme-system", jti=jti)))
    assert first.status_code == 200
    assert api.post("/oauth/token", data=token_form(assertion(keys["site"], "site-a-ehr", jti=jti),
                                                   "system/Task.rs")).status_code == 200


def test_unknown_kid(api, keys):
    bad = assertion(keys["acme"], "acme-system", kid="not-a-kid")
    refused(api.post("/oauth/token", data=token_form(bad)), 401, "invalid_client", "kid")


def test_a_key_with_the_right_kid_but_another_secret(api, keys):
    bad = assertion(keys["other_rsa"], "acme-system")  # same kid "acme-rsa", a different key pair
    refused(api.post("/oauth/token", data=token_form(bad)), 401, "invalid_client", "signature")
    bad = assertion(keys["other_ec"], "site-a-ehr")
    refused(api.post("/oauth/token", data=token_form(bad, "system/Task.rs")), 401, "invalid_client",
            "signature")


def test_alg_none(api, keys):
    refused(api.post("/oauth/token", data=token_form(unsigned_assertion("acme-system", "acme-rsa"))), 401,
            "invalid_client", "alg")


def test_hs256_with_the_public_key_as_secret(api, keys):
    bad = hs256_with_public_key(keys["acme"], "acme-system")
    refused(api.post("/oauth/token", data=token_form(bad)), 401, "invalid_client", "alg")


@pytest.mark.parametrize("alg", ["RS256", "RS512", "PS384"])
def test_other_rsa_algorithms(api, keys, alg):
    bad = assertion(keys["acme"], "acme-system", alg=alg)
    refused(api.post("/oauth/token", data=token_form(bad)), 401, "invalid_client", "alg")


def test_es384_header_on_an_rsa_key(api, keys):
    bad = assertion(keys["site"], "acme-system", kid="acme-rsa")  # ES384-signed, naming the RSA key
    refused(api.post("/oauth/token", data=token_form(bad)), 401, "invalid_client", "RS384")


def test_garbage_assertion(api):
    refused(api.post("/oauth/token", data=token_form("not.a.jwt")), 401, "invalid_client", "compact JWS")


# --------------------------------------------------------------------------- request refusals

def test_scope_beyond_the_clients(api, keys):
    body = refused(api.post("/oauth/token", data=token_form(assertion(keys["site"], "site-a-ehr"),
                                                            "system/Task.rs system/Patient.rs")),
                   400, "invalid_scope", "system/Patient.rs")
    assert "beyond" in body["error_description"]
    refused(api.post("/oauth/token", data=token_form(assertion(keys["site"], "site-a-ehr"), "admin")),
            400, "invalid_scope", "admin")


@pytest.mark.parametrize("scope", ["patient/Task.rs", "system/Task.sr", "system/Nothing.rs", "orders.delete",
                                   "system/Task.rx"])
def test_unknown_scopes_are_refused_never_dropped(api, keys, scope):
    response = api.post("/oauth/token", data=token_form(assertion(keys["acme"], "acme-system"),
                                                        f"orders.read {scope}"))
    refused(response, 400, "invalid_scope", scope)


def test_v1_read_scope_is_accepted(api, keys):
    token = get_token(api, keys["acme"], "acme-system", "system/Task.read")
    assert api.get("/fhir/Task", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize(("form", "error", "words"), [
    ({"grant_type": None}, "invalid_request", "grant_type is required"),
    ({"grant_type": "password"}, "unsupported_grant_type", "client_credentials"),
    ({"client_assertion_type": "urn:other"}, "invalid_request", "client_assertion_type"),
    ({"client_assertion": None}, "invalid_request", "client_assertion is required"),
    ({"scope": None}, "invalid_request", "scope is required"),
])
def test_malformed_requests(api, keys, form, error, words):
    data = token_form(assertion(keys["acme"], "acme-system"), **form)
    refused(api.post("/oauth/token", data=data), 400, error, words)


def test_repeated_parameter_json_body_and_sizes(api, keys, oauth_settings):
    good = assertion(keys["acme"], "acme-system")
    body = "&".join(f"{k}={v}" for k, v in token_form(good).items()) + "&scope=admin"
    refused(api.post("/oauth/token", content=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded"}), 400, "invalid_request",
            "more than once")
    refused(api.post("/oauth/token", json=token_form(good)), 400, "invalid_request", "form-encoded")
    big = "a" * (oauth_settings.oauth_max_request_bytes + 1)
    refused(api.post("/oauth/token", data={"client_assertion": big}), 400, "invalid_request", "larger")
    long = "a" * (oauth_settings.oauth_max_assertion_bytes + 1)
    refused(api.post("/oauth/token", data=token_form(long)), 400, "invalid_request", "longer")


# --------------------------------------------------------------------------- scopes enforced

def test_insufficient_scope_is_403_on_v1_and_fhir(api, keys):
    token = bearer(get_token(api, keys["site"], "site-a-ehr", "system/Task.rs"))
    v1 = api.get("/v1/orders", headers=token)
    assert v1.status_code == 403
    assert v1.headers["content-type"].startswith("application/problem+json")
    assert v1.json()["code"] == "insufficient-scope"
    assert v1.headers["www-authenticate"] == 'Bearer error="insufficient_scope", scope="orders.read"'
    fhir = api.get("/fhir/Observation", headers=token)
    assert fhir.status_code == 403
    assert fhir.json()["resourceType"] == "OperationOutcome"
    assert fhir.json()["issue"][0]["code"] == "forbidden"
    assert fhir.headers["www-authenticate"] == ('Bearer error="insufficient_scope", '
                                                'scope="system/Observation.s"')
    assert api.get("/fhir/Task", headers=token).status_code == 200


def test_search_scope_does_not_grant_read(api, keys):
    token = bearer(get_token(api, keys["site"], "site-a-ehr", "system/Task.s"))
    assert api.get("/fhir/Task", headers=token).status_code == 200
    read = api.get("/fhir/Task/some-id", headers=token)
    assert read.status_code == 403 and 'scope="system/Task.r"' in read.headers["www-authenticate"]
    assert api.get("/fhir/Task/some-id/_history", headers=token).status_code == 403
    assert api.get("/fhir/Task/_history", headers=token).status_code == 200


def test_order_writes_need_orders_write_and_admin_routes_admin(api, keys):
    reader = bearer(get_token(api, keys["acme"], "acme-system", "orders.read"))
    write = api.post("/v1/orders", json=order_body("OA-9"), headers=reader)
    assert write.status_code == 403 and 'scope="orders.write"' in write.headers["www-authenticate"]
    event = api.post("/v1/orders/OA-9/events", json={}, headers=reader)
    assert event.status_code == 403
    retract = api.post("/v1/orders/OA-9/events/E/retract", json={"reason": "x"}, headers=reader)
    assert retract.status_code == 403
    ops = bearer(get_token(api, keys["admin"], "ops", "orders.read system/*.rs"))
    for path in ("/v1/admin/safety-log", "/v1/admin/outbox", "/v1/admin/alerts"):
        response = api.get(path, headers=ops)
        assert response.status_code == 403, path
        assert 'scope="admin"' in response.headers["www-authenticate"]
    admin = bearer(get_token(api, keys["admin"], "ops", "admin"))
    assert api.get("/v1/admin/safety-log", headers=admin).status_code == 200
    assert api.get("/v1/admin/outbox", headers=admin).status_code == 200


def test_static_tokens_keep_every_scope_of_their_role(api):
    assert api.post("/v1/orders", json=order_body("OA-5"), headers=ACME).status_code == 201
    assert api.get("/fhir/Observation", headers=SITE_A).status_code == 200
    assert api.get("/v1/admin/safety-log", headers=ADMIN).status_code == 200


def test_an_oauth_token_on_a_route_that_declares_no_scope_is_refused(oauth_settings, engine, clock, keys):
    app = create_app(oauth_settings, engine=engine, now=clock)

    @app.get("/v1/undeclared")
    def undeclared(principal: Annotated[Principal, Depends(current_principal)]) -> dict:
        return {"role": principal.role}

    with TestClient(app) as api:
        token = bearer(get_token(api, keys["admin"], "ops", "admin orders.read system/*.rs"))
        response = api.get("/v1/undeclared", headers=token)
        assert response.status_code == 403
        assert response.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'
        assert api.get("/v1/undeclared", headers=ADMIN).json() == {"role": "admin"}


# --------------------------------------------------------------------------- lifetime and revocation

def test_access_tokens_expire(api, keys, clock):
    token = bearer(get_token(api, keys["acme"], "acme-system", "orders.read"))
    assert api.get("/v1/orders", headers=token).status_code == 200
    clock.advance(seconds=299)
    assert api.get("/v1/orders", headers=token).status_code == 200
    clock.advance(seconds=2)
    expired = api.get("/v1/orders", headers=token)
    assert expired.status_code == 401 and expired.json()["code"] == "unauthenticated"


def test_a_revoked_client(api, oauth_settings, engine):
    key = rsa_key("reg-1")
    client = register_client(engine, oauth_settings, role="site:site-a", jwks_text=json.dumps(key.jwks()),
                             scopes="system/Task.rs", now=datetime.now(UTC))
    token = bearer(get_token(api, key, client.client_id, "system/Task.rs"))
    assert api.get("/fhir/Task", headers=token).status_code == 200
    assert revoke_client(engine, oauth_settings, client.client_id, datetime.now(UTC)) is True
    assert api.get("/fhir/Task", headers=token).status_code == 401
    again = api.post("/oauth/token", data=token_form(assertion(key, client.client_id), "system/Task.rs"))
    refused(again, 401, "invalid_client", "revoked")
    assert revoke_client(engine, oauth_settings, client.client_id, datetime.now(UTC)) is False


def test_a_client_removed_from_the_configuration_loses_its_tokens(api, keys, engine, clock):
    token = bearer(get_token(api, keys["site"], "site-a-ehr", "system/Task.rs"))
    without = load_settings(DEMO_CONFIG, database_url=engine.url.render_as_string(hide_password=False),
                            public_base_url="http://testserver")
    with TestClient(create_app(without, engine=engine, now=clock)) as restarted:
        assert restarted.get("/fhir/Task", headers=token).status_code == 401


# --------------------------------------------------------------------------- static tokens switched off

def test_static_tokens_false_refuses_demo_and_created_tokens(engine, keys, clock):
    from gateway.auth import create_token

    settings = make_settings(engine, keys, static_tokens=False)
    created = create_token(engine, settings, role="manufacturer:acme-bio", name="made", now=datetime.now(UTC))
    with TestClient(create_app(settings, engine=engine, now=clock)) as api:
        for headers in (ACME, SITE_A, ADMIN, bearer(created)):
            assert api.get("/v1/orders", headers=headers).status_code == 401
            assert api.get("/fhir/Task", headers=headers).status_code == 401
        token = bearer(get_token(api, keys["acme"], "acme-system", "orders.read system/*.rs"))
        assert api.get("/v1/orders", headers=token).status_code == 200
        assert api.get("/fhir/Task", headers=token).status_code == 200
    assert principal_for_token("demo-acme-token", settings, engine) is None


def test_head_and_preview_need_their_scopes(api, keys):
    token = bearer(get_token(api, keys["site"], "site-a-ehr", "system/Observation.rs"))
    assert api.head("/fhir/Task/some-id", headers=token).status_code == 403
    assert api.head("/fhir/Task", headers=token).status_code == 403
    preview = api.post("/v1/sites/site-a/preview", json={"order": order_body("P-1")}, headers=token)
    assert preview.status_code == 403
    assert preview.headers["www-authenticate"] == ('Bearer error="insufficient_scope", '
                                                   'scope="orders.read admin"')
    reader = bearer(get_token(api, keys["site"], "site-a-ehr", "orders.read"))
    allowed = api.post("/v1/sites/site-a/preview", json={"order": order_body("P-1")}, headers=reader)
    assert allowed.status_code == 200


def test_a_client_whose_tenant_is_no_longer_configured_gets_invalid_grant(oauth_settings, engine, clock,
                                                                          tmp_path):
    import yaml

    key = ec_key("nova")
    client = register_client(engine, oauth_settings, role="manufacturer:nova-cell",
                             jwks_text=key.public_pem(), scopes="orders.read", now=datetime.now(UTC))
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    config["manufacturers"] = [m for m in config["manufacturers"] if m["id"] != "nova-cell"]
    config["api_clients"] = [c for c in config["api_clients"] if "nova-cell" not in c["role"]]
    for site in config["sites"]:
        site["profile"] = str((DEMO_CONFIG.parent / site["profile"]).resolve())
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(config))
    settings = load_settings(tmp_path / "gateway.yaml", database_url=oauth_settings.database_url,
                             public_base_url="http://testserver")
    with TestClient(create_app(settings, engine=engine, now=clock)) as api:
        response = api.post("/oauth/token", data=token_form(assertion(key, client.client_id, kid=None),
                                                            "orders.read"))
        refused(response, 400, "invalid_grant", "no longer configured")
