"""A wrong Chain of Identity is a CoI refusal whatever else is wrong with the event: re-using an
accepted event's id with another CoI is answered ``422 coi-mismatch`` and kept in the safety log
(not a bare ``409 duplicate-event`` that would hide the attempt from admins)."""

from __future__ import annotations

from tests.conftest import ACME, ACME_COI, ADMIN, event_body, order_body

OTHER_COI = "CHA999923A1B2C4K"


def test_reused_event_id_with_another_coi_is_a_logged_coi_mismatch(client):
    assert client.post("/v1/orders", json=order_body("Q1-COI"), headers=ACME).status_code == 201
    accepted = event_body("Q1-E1", "order.confirmed", "2026-11-25T09:00:00Z")
    assert client.post("/v1/orders/Q1-COI/events", json=accepted, headers=ACME).status_code == 201
    before = client.get("/v1/orders/Q1-COI", headers=ACME).json()

    replay = {**accepted, "coi": OTHER_COI}
    refused = client.post("/v1/orders/Q1-COI/events", json=replay, headers=ACME)
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "coi-mismatch"
    assert refused.json()["errors"][0]["pointer"] == "/coi"

    log = client.get("/v1/admin/safety-log", headers=ADMIN).json()["items"]
    assert [(e["code"], e["event_id"], e["presented_coi"]) for e in log] == [
        ("coi-mismatch", "Q1-E1", OTHER_COI)
    ]
    assert client.get("/v1/orders/Q1-COI", headers=ACME).json() == before

    # The identical replay is still the same answer, and another body with the right CoI still 409.
    again = client.post("/v1/orders/Q1-COI/events", json=accepted, headers=ACME)
    assert again.status_code == 200
    changed = {**accepted, "data": {"slot_id": "S-2"}, "coi": ACME_COI}
    assert client.post("/v1/orders/Q1-COI/events", json=changed, headers=ACME).json()["code"] == (
        "duplicate-event"
    )
