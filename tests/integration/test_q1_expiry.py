"""``manufacturing.completed`` must name an ``expires_at`` after the product was made (its
``occurred_at``): a product that expired before it existed is refused by name, like one beyond the
product's shelf life, and nothing is stored."""

from __future__ import annotations

import pytest

from tests.conftest import ACME, event_body, order_body


@pytest.mark.parametrize("expires_at", ["2026-11-20T09:00:00Z", "2026-11-26T09:00:00Z"])
def test_expiry_not_after_manufacture_is_refused(client, expires_at):
    assert client.post("/v1/orders", json=order_body("Q1-EXP"), headers=ACME).status_code == 201
    collected = event_body("Q1-X0", "collection.completed", "2026-11-25T09:00:00Z",
                           {"collected_at": "2026-11-25T08:00:00Z"})
    assert client.post("/v1/orders/Q1-EXP/events", json=collected, headers=ACME).status_code == 201
    body = event_body("Q1-X1", "manufacturing.completed", "2026-11-26T09:00:00Z",
                      {"lot": "L1", "expires_at": expires_at})
    refused = client.post("/v1/orders/Q1-EXP/events", json=body, headers=ACME)
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "validation-failed"
    assert [e["pointer"] for e in refused.json()["errors"]] == ["/data/expires_at"]
    assert client.get("/v1/orders/Q1-EXP", headers=ACME).json()["status"] == "collected"
    fine = {**body, "data": {"lot": "L1", "expires_at": "2026-12-26T09:00:00Z"}}
    assert client.post("/v1/orders/Q1-EXP/events", json=fine, headers=ACME).status_code == 201
