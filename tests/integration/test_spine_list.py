"""GET /v1/orders: filters and keyset paging that neither skips nor repeats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.conftest import ACME, event_body, isbt_coi, order_body

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)


def test_paging_filters_and_updated_since(client, clock):
    clock.set(T0)
    for i in range(7):
        clock.advance(minutes=1)
        assert (
            client.post(
                "/v1/orders",
                json=order_body(f"P-{i}", coi=isbt_coi(i), site_id="site-a" if i % 2 else "site-b"),
                headers=ACME,
            ).status_code
            == 201
        )
    seen, cursor = [], None
    while True:
        url = "/v1/orders?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=ACME).json()
        assert len(page["items"]) <= 3
        seen += [o["order_id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"P-{i}" for i in range(7)]

    site_a = client.get("/v1/orders?site_id=site-a", headers=ACME).json()["items"]
    assert [o["order_id"] for o in site_a] == ["P-1", "P-3", "P-5"]

    clock.advance(minutes=5)
    confirm = event_body("E", "order.confirmed", (T0 + timedelta(minutes=11)).isoformat(), coi=isbt_coi(0))
    r = client.post("/v1/orders/P-0/events", json=confirm, headers=ACME)
    assert r.status_code == 201
    since = (T0 + timedelta(minutes=10)).isoformat().replace("+00:00", "Z")
    changed = client.get("/v1/orders", params={"updated_since": since}, headers=ACME).json()["items"]
    assert [o["order_id"] for o in changed] == ["P-0"]
    confirmed = client.get("/v1/orders?status=confirmed", headers=ACME).json()["items"]
    assert [o["order_id"] for o in confirmed] == ["P-0"]
    assert client.get("/v1/orders?status=placed&limit=200", headers=ACME).json()["next_cursor"] is None
