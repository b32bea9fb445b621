"""``NaN`` and ``Infinity`` are not JSON numbers.  Python's JSON reader lets them through, so a
measurement, result or temperature of ``NaN`` / ``Infinity`` must be refused by name (422), not
crash the request (500); a boolean is not a measurement value either (it used to become ``1.0``).
Nothing is stored and the server keeps serving."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ACME, ACME_COI, event_body, order_body

JSON = {**ACME, "Content-Type": "application/json"}


def _collected(event_id: str, value: str) -> bytes:
    body = event_body(event_id, "collection.completed", "2026-11-25T09:00:00Z",
                      {"collected_at": "2026-11-25T09:00:00Z",
                       "measurements": [{"code": "viability_pct", "value": "VALUE", "unit": "%"}]})
    return json.dumps(body).replace('"VALUE"', value).encode()


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "true", "1e400", "1" + "0" * 400])
def test_non_finite_or_boolean_measurement_is_refused_by_name(client, literal):
    assert client.post("/v1/orders", json=order_body("Q1-NAN"), headers=ACME).status_code == 201
    response = client.post("/v1/orders/Q1-NAN/events", content=_collected("Q1-N1", literal), headers=JSON)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "validation-failed"
    assert [e["pointer"] for e in problem["errors"]] == ["/data/measurements/0/value"]
    order = client.get("/v1/orders/Q1-NAN", headers=ACME).json()
    assert order["status"] == "placed" and len(order["timeline"]) == 1
    fine = client.post("/v1/orders/Q1-NAN/events", content=_collected("Q1-N2", "96"), headers=JSON)
    assert fine.status_code == 201, fine.text


def test_non_finite_temperature_is_refused_by_name(client):
    assert client.post("/v1/orders", json=order_body("Q1-NAN2"), headers=ACME).status_code == 201
    collected = client.post("/v1/orders/Q1-NAN2/events", content=_collected("Q1-T0", "96"), headers=JSON)
    assert collected.status_code == 201
    body = event_body("Q1-T1", "custody.transferred", "2026-11-25T10:00:00Z",
                      {"from_party": "site", "to_party": "courier", "at": "2026-11-25T10:00:00Z",
                       "temperature_c": -150}, coi=ACME_COI)
    raw = json.dumps(body).replace("-150", "NaN").encode()
    response = client.post("/v1/orders/Q1-NAN2/events", content=raw, headers=JSON)
    assert response.status_code == 422, response.text
    assert [e["pointer"] for e in response.json()["errors"]] == ["/data/temperature_c"]
