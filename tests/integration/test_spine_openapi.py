"""OpenAPI at /docs describes the manufacturer API with its request schemas."""

from __future__ import annotations


def test_openapi_lists_the_spine_routes(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert {
        "/v1/orders",
        "/v1/orders/{order_id}",
        "/v1/orders/{order_id}/events",
        "/healthz",
        "/readyz",
        "/v1/admin/safety-log",
    } <= set(paths)
    body = paths["/v1/orders"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/OrderIn")
    assert "EventIn" in spec["components"]["schemas"]
    assert client.get("/docs").status_code == 200
