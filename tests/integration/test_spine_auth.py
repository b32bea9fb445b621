"""Bearer tokens, roles and tenant isolation: 401 / 403 / 404 rules, DB-stored tokens."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.auth import create_token
from tests.conftest import ACME, ADMIN, NOVA, SITE_A, SITE_B, event_body, nova_order_body, order_body

CONFIRM = event_body("E1", "order.confirmed", "2099-01-01T00:00:00Z")


@pytest.fixture
def orders(client):
    assert client.post("/v1/orders", json=order_body("ACME-1"), headers=ACME).status_code == 201
    assert client.post("/v1/orders", json=nova_order_body("NOVA-1"), headers=NOVA).status_code == 201
    return client


def _code(response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return response.json()["code"]


BAD_HEADERS = [
    {},
    {"Authorization": "Bearer nope"},
    {"Authorization": "demo-acme-token"},
    {"Authorization": "Basic ZGVtbzpkZW1v"},
    {"Authorization": "Bearer "},
]
ROUTES = [
    ("POST", "/v1/orders"),
    ("GET", "/v1/orders"),
    ("GET", "/v1/orders/ACME-1"),
    ("POST", "/v1/orders/ACME-1/events"),
    ("GET", "/v1/admin/safety-log"),
]


def test_missing_or_wrong_token_is_401(orders):
    for headers in BAD_HEADERS:
        for method, path in ROUTES:
            body = order_body() if path == "/v1/orders" else CONFIRM
            r = orders.request(method, path, headers=headers, json=body if method == "POST" else None)
            assert r.status_code == 401 and _code(r) == "unauthenticated", (headers, method, path)
            assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("headers", [SITE_A, SITE_B, ADMIN])
def test_site_and_admin_tokens_cannot_write(orders, headers):
    r = orders.post("/v1/orders", json=order_body("X-1"), headers=headers)
    assert r.status_code == 403 and _code(r) == "forbidden"
    r = orders.post("/v1/orders/ACME-1/events", json=CONFIRM, headers=headers)
    assert r.status_code == 403 and _code(r) == "forbidden"
    # even with an invalid body, the role is refused first
    r = orders.post("/v1/orders/ACME-1/events", json={"bogus": 1}, headers=headers)
    assert r.status_code == 403


def test_manufacturers_are_isolated(orders):
    r = orders.get("/v1/orders/NOVA-1", headers=ACME)
    assert r.status_code == 404 and _code(r) == "not-found"
    r = orders.post("/v1/orders/NOVA-1/events", json=CONFIRM, headers=ACME)
    assert r.status_code == 404
    assert orders.get("/v1/orders/ACME-1", headers=NOVA).status_code == 404
    assert [o["order_id"] for o in orders.get("/v1/orders", headers=ACME).json()["items"]] == ["ACME-1"]
    assert [o["order_id"] for o in orders.get("/v1/orders", headers=NOVA).json()["items"]] == ["NOVA-1"]
    # asking for another manufacturer's orders by filter does not widen the view
    listed = orders.get("/v1/orders?manufacturer_id=nova-cell", headers=ACME).json()["items"]
    assert [o["order_id"] for o in listed] == ["ACME-1"]
    # nothing happened to nova's order
    assert orders.get("/v1/orders/NOVA-1", headers=NOVA).json()["status"] == "placed"


def test_sites_read_only_their_orders_and_admin_reads_all(orders):
    assert [o["order_id"] for o in orders.get("/v1/orders", headers=SITE_A).json()["items"]] == ["ACME-1"]
    assert [o["order_id"] for o in orders.get("/v1/orders", headers=SITE_B).json()["items"]] == ["NOVA-1"]
    assert orders.get("/v1/orders/ACME-1", headers=SITE_A).status_code == 200
    assert orders.get("/v1/orders/ACME-1", headers=SITE_B).status_code == 404
    assert orders.get("/v1/orders?site_id=site-b", headers=SITE_A).status_code == 403
    assert {o["order_id"] for o in orders.get("/v1/orders", headers=ADMIN).json()["items"]} == {
        "ACME-1",
        "NOVA-1",
    }


def test_created_token_works_and_only_its_hash_is_stored(orders, engine, settings):
    token = create_token(
        engine, settings, role="manufacturer:nova-cell", name="nova prod", now=datetime.now(UTC)
    )
    with engine.connect() as conn:
        stored = [tuple(r) for r in conn.exec_driver_sql("SELECT role, token_sha256 FROM api_client")]
    assert len(stored) == 1 and stored[0][0] == "manufacturer:nova-cell" and token not in stored[0][1]
    r = orders.get("/v1/orders/NOVA-1", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert orders.get("/v1/orders/ACME-1", headers={"Authorization": f"Bearer {token}"}).status_code == 404


def test_token_for_unknown_subject_is_refused(engine, settings):
    with pytest.raises(ValueError, match="unknown manufacturer"):
        create_token(engine, settings, role="manufacturer:ghost", name="x", now=datetime.now(UTC))
    with pytest.raises(ValueError, match="role must be"):
        create_token(engine, settings, role="superuser", name="x", now=datetime.now(UTC))
