"""A patient cannot be born after the order is placed: a future ``birth_date`` is refused by name
(the gateway's clock decides what "future" is); today's is fine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.conftest import ACME, order_body

NOW = datetime(2026, 11, 21, 23, 0, tzinfo=UTC)


def test_future_birth_date_is_refused(client, clock):
    clock.set(NOW)
    patient = {**order_body()["patient"], "birth_date": (NOW + timedelta(days=3)).date().isoformat()}
    refused = client.post("/v1/orders", json=order_body("Q1-BD", patient=patient), headers=ACME)
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "validation-failed"
    assert [e["pointer"] for e in refused.json()["errors"]] == ["/patient/birth_date"]
    assert client.get("/v1/orders/Q1-BD", headers=ACME).status_code == 404
    today = {**patient, "birth_date": NOW.date().isoformat()}
    assert client.post("/v1/orders", json=order_body("Q1-BD", patient=today), headers=ACME).status_code == 201


def test_requested_infusion_before_apheresis_is_refused(client):
    requested = {"apheresis_date": "2026-12-10", "infusion_date": "2026-12-01"}
    refused = client.post("/v1/orders", json=order_body("Q1-RQ", requested=requested), headers=ACME)
    assert refused.status_code == 422, refused.text
    assert [e["pointer"] for e in refused.json()["errors"]] == ["/requested/infusion_date"]
    same_day = {"apheresis_date": "2026-12-10", "infusion_date": "2026-12-10"}
    assert client.post("/v1/orders", json=order_body("Q1-RQ", requested=same_day),
                       headers=ACME).status_code == 201
