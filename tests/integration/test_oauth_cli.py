"""`cgt-gateway client register|list|revoke` and `cgt-gateway token revoke NAME`, on a SQLite file."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from gateway.bootstrap import create_app
from gateway.cli.main import app
from gateway.config import DEMO_CONFIG, load_settings
from tests.integration.test_oauth_support import assertion, bearer, ec_key, rsa_key, token_form


@pytest.fixture
def db(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("CGT_GATEWAY_DATABASE_URL", url)
    monkeypatch.setenv("CGT_GATEWAY_PUBLIC_BASE_URL", "http://testserver")
    return url


def run(*args: str):
    return CliRunner().invoke(app, [*args, "--config", str(DEMO_CONFIG)])


def test_register_list_use_and_revoke_a_client(db, tmp_path):
    key = rsa_key("k1")
    (tmp_path / "client.jwks.json").write_text(json.dumps(key.jwks()))
    result = run("client", "register", "--role", "site:site-a", "--jwks", str(tmp_path / "client.jwks.json"),
                 "--scopes", "system/Task.rs orders.read")
    assert result.exit_code == 0, result.output
    first, *rest = result.stdout.splitlines()
    assert first.startswith("client_id: ")
    client_id = first.removeprefix("client_id: ")
    assert "token endpoint: http://testserver/oauth/token" in rest

    listed = run("client", "list")
    assert listed.exit_code == 0
    assert f"{client_id}\tsite:site-a\tregistered\tactive\tsystem/Task.rs orders.read" in listed.stdout

    settings = load_settings(DEMO_CONFIG)
    with TestClient(create_app(settings)) as api:
        response = api.post("/oauth/token", data=token_form(assertion(key, client_id), "system/Task.rs"))
        assert response.status_code == 200, response.text
        token = bearer(response.json()["access_token"])
        assert api.get("/fhir/Task", headers=token).status_code == 200

        revoked = run("client", "revoke", client_id)
        assert revoked.exit_code == 0 and f"revoked client {client_id}" in revoked.stdout
        assert api.get("/fhir/Task", headers=token).status_code == 401
        again = api.post("/oauth/token", data=token_form(assertion(key, client_id), "system/Task.rs"))
        assert again.status_code == 401 and again.json()["error"] == "invalid_client"

    assert "already revoked" in run("client", "revoke", client_id).stdout
    assert "revoked 20" in run("client", "list").stdout  # revoked <timestamp>
    assert run("client", "revoke", "no-such-client").exit_code == 1


def test_register_takes_a_pem_public_key(db, tmp_path):
    key = ec_key()
    (tmp_path / "client.pub").write_bytes(key.public_pem())
    result = run("client", "register", "--role", "manufacturer:acme-bio",
                 "--jwks", str(tmp_path / "client.pub"), "--scopes", "orders.write orders.read")
    assert result.exit_code == 0, result.output
    assert " ES384" in result.stdout


@pytest.mark.parametrize(("jwks", "scopes", "role", "words"), [
    ({"keys": []}, "orders.read", "site:site-a", "no key"),
    ("private", "orders.read", "site:site-a", "private key"),
    ("good", "orders.write", "site:site-a", "not allowed for a site"),
    ("good", "system/Task.c", "manufacturer:acme-bio", "not allowed for a manufacturer"),
    ("good", "patient/*.rs", "site:site-a", "unknown scope"),
    ("good", "orders.read", "site:nowhere", "unknown site"),
    ("notjson", "orders.read", "site:site-a", "neither JSON nor a PEM"),
])
def test_register_refuses_bad_input(db, tmp_path, jwks, scopes, role, words):
    key = rsa_key()
    path = tmp_path / "client.jwks.json"
    if jwks == "good":
        path.write_text(json.dumps(key.jwks()))
    elif jwks == "private":
        path.write_text(json.dumps({"keys": [{**key.jwk(), "d": "AAAA"}]}))
    elif jwks == "notjson":
        path.write_text("{nope")
    else:
        path.write_text(json.dumps(jwks))
    result = run("client", "register", "--role", role, "--jwks", str(path), "--scopes", scopes)
    assert result.exit_code == 2, result.output
    assert words in result.output


def test_configured_clients_are_listed_and_not_revoked_by_the_cli(db, tmp_path):
    key = rsa_key()
    (tmp_path / "ops.jwks").write_text(json.dumps(key.jwks()))
    config = tmp_path / "gateway.yaml"
    fixtures = str(DEMO_CONFIG.parent.parent.parent / "fixtures")
    text = DEMO_CONFIG.read_text().replace("../../fixtures/", fixtures + "/")
    config.write_text(text + "\noauth_clients:\n  - client_id: ops\n    role: admin\n    scopes: admin\n"
                      "    jwks_file: ops.jwks\n")
    listed = CliRunner().invoke(app, ["client", "list", "--config", str(config)])
    assert listed.exit_code == 0, listed.output
    assert "ops\tadmin\tconfig\tactive\tadmin" in listed.stdout
    refused = CliRunner().invoke(app, ["client", "revoke", "ops", "--config", str(config)])
    assert refused.exit_code == 2 and "remove it from oauth_clients" in refused.output


def test_token_revoke_by_name(db):
    created = run("token", "create", "--role", "manufacturer:acme-bio", "--name", "acme-ci")
    assert created.exit_code == 0
    token = created.stdout.strip().splitlines()[0]
    settings = load_settings(DEMO_CONFIG)
    with TestClient(create_app(settings)) as api:
        assert api.get("/v1/orders", headers=bearer(token)).status_code == 200
        revoked = run("token", "revoke", "acme-ci")
        assert revoked.exit_code == 0 and "revoked 1 token named acme-ci" in revoked.stdout
        assert api.get("/v1/orders", headers=bearer(token)).status_code == 401
    assert run("token", "revoke", "acme-ci").exit_code == 1
