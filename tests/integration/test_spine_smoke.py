"""Smoke: the app factory on both backends answers health checks and places an order."""

from tests.conftest import ACME


def test_health_and_ready(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_place_order(client):
    body = {
        "order_id": "ORD-1",
        "coi": "CHA999923A1B2C3M",
        "product_code": "CART-CD19",
        "site_id": "site-a",
        "patient": {
            "mrn": "MRN1",
            "family": "Doe",
            "given": ["Jane"],
            "birth_date": "1980-01-02",
            "sex": "female",
        },
        "ordering_provider": {"npi": "1234567893", "family": "House", "given": ["Greg"]},
        "priority": "routine",
    }
    r = client.post("/v1/orders", json=body, headers=ACME)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "placed"
    r2 = client.post("/v1/orders", json=body, headers=ACME)
    assert r2.status_code == 200
