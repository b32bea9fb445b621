"""The console with real OAuth access tokens (issue 14's ``gateway.oauth``): sign-in keeps the token's
scopes, pages need the API's scopes, and the session ends with the token's lifetime.  Runs where issue
14's OAuth is merged (``gateway.oauth.tokens`` importable); the same rules are checked without it, with
a stand-in principal, in test_console_http.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import Engine

from gateway.bootstrap import create_app
from gateway.config import Settings
from tests.conftest import ACME, FakeClock, TestClient, order_body
from tests.console_support import sign_in

tokens = pytest.importorskip("gateway.oauth.tokens", reason="issue 14's OAuth is not merged into this tree")
clients = pytest.importorskip("gateway.oauth.clients")
support = pytest.importorskip("tests.integration.test_oauth_support")


@pytest.fixture
def console(settings: Settings, engine: Engine, clock: FakeClock) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine=engine, now=clock), raise_server_exceptions=False) as client:
        assert client.post("/v1/orders", json=order_body("ORD-1"), headers=ACME).status_code == 201
        yield client


def _token(engine: Engine, settings: Settings, role: str, scopes: str) -> str:
    now = datetime.now(UTC)
    keys = json.dumps(support.rsa_key().jwks())
    client = clients.register_client(engine, settings, role=role, jwks_text=keys, scopes=scopes, now=now)
    token, _lifetime = tokens.issue_access_token(engine, settings, client, scopes.split(), now)
    return str(token)


def test_a_real_access_token_signs_in_with_its_scopes(console: TestClient, engine: Engine, settings: Settings,
                                                      clock: FakeClock) -> None:
    reader = _token(engine, settings, "site:site-a", "orders.read system/*.rs")
    assert sign_in(console, reader).status_code == 303
    assert console.get("/console/orders/ORD-1").status_code == 200
    assert console.get("/console/outbox").status_code == 403
    clock.advance(seconds=settings.oauth_access_token_lifetime_s + 1)  # the token's lifetime is the session's
    assert console.get("/console", follow_redirects=False).headers["location"] == "/console/sign-in"


def test_an_access_token_without_orders_read_or_admin_cannot_sign_in(console: TestClient, engine: Engine,
                                                                     settings: Settings) -> None:
    fhir_only = _token(engine, settings, "site:site-a", "system/Task.rs")
    response = sign_in(console, fhir_only)
    assert response.status_code == 403 and "neither orders.read nor admin" in response.text


def test_an_admin_access_token_needs_the_admin_scope_for_the_queues(console: TestClient, engine: Engine,
                                                                    settings: Settings) -> None:
    assert sign_in(console, _token(engine, settings, "admin", "orders.read")).status_code == 303
    assert console.get("/console/outbox").status_code == 403
    console.cookies.clear()
    assert sign_in(console, _token(engine, settings, "admin", "admin orders.read")).status_code == 303
    assert console.get("/console/outbox").status_code == 200
    assert console.get("/console/orders/ORD-1").status_code == 200
