"""Odd but well-formed input is a 4xx naming the field, never a 500, on SQLite and PostgreSQL:

* NUL characters (JSON ``\\u0000``, URL ``%00``), which PostgreSQL text columns cannot hold;
* times whose offset puts them outside years 1-9999 once converted to UTC (``9999-12-31T23:59-23:59``),
  in a body, a query parameter or a forged paging cursor.
"""

from __future__ import annotations

import base64

import orjson
import pytest

from tests.conftest import ACME, ACME_COI, ADMIN, event_body, isbt_coi, order_body

TOO_LATE = "9999-12-31T23:59:59-23:59"
TOO_EARLY = "0001-01-01T00:00:00+01:00"


def _problem(response, status: int, pointer: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert pointer in [e["pointer"] for e in response.json()["errors"]], response.text


@pytest.mark.parametrize(("field", "value", "pointer"), [
    ("mrn", "MRN-\u0000", "/patient/mrn"),
    ("family", "Do\u0000e", "/patient/family"),
])
def test_nul_in_an_order_is_refused_by_name(client, field, value, pointer):
    patient = {**order_body()["patient"], field: value}
    response = client.post("/v1/orders", json=order_body("Q1-NUL", coi=isbt_coi(71), patient=patient),
                           headers=ACME)
    _problem(response, 422, pointer)
    assert client.get("/v1/orders/Q1-NUL", headers=ACME).status_code == 404


def test_nul_or_out_of_range_times_in_an_event_are_refused_by_name(client):
    assert client.post("/v1/orders", json=order_body("Q1-ODD"), headers=ACME).status_code == 201
    cases = [
        ({**event_body("Q1-O1", "order.on_hold", "2026-11-25T09:00:00Z", {"reason": "x"}),
          "coi": ACME_COI + "\u0000"}, "/coi"),
        (event_body("Q1-O2", "order.on_hold", TOO_LATE, {"reason": "x"}), "/occurred_at"),
        (event_body("Q1-O3", "order.on_hold", TOO_EARLY, {"reason": "x"}), "/occurred_at"),
        (event_body("Q1-O4", "apheresis.scheduled", "2026-11-25T09:00:00Z", {"start": TOO_LATE}),
         "/data/start"),
        (event_body("Q1-O5", "order.confirmed", "2026-11-25T09:00:00Z", {"slot_id": "S\u0000"}),
         "/data/slot_id"),
    ]
    for body, pointer in cases:
        _problem(client.post("/v1/orders/Q1-ODD/events", json=body, headers=ACME), 422, pointer)
    order = client.get("/v1/orders/Q1-ODD", headers=ACME).json()
    assert order["status"] == "placed" and len(order["timeline"]) == 1
    assert client.get("/v1/admin/safety-log", headers=ADMIN).json()["items"] == []


def test_nul_and_out_of_range_times_in_the_url_are_refused(client):
    """Query parameters: 400 invalid-parameter (issue 11), naming the parameter."""
    assert client.post("/v1/orders", json=order_body("Q1-URL"), headers=ACME).status_code == 201
    missing = client.get("/v1/orders/Q1%00URL", headers=ACME)
    assert missing.status_code == 404 and missing.json()["code"] == "not-found"
    event = event_body("Q1-U1", "order.confirmed", "2026-11-25T09:00:00Z")
    assert client.post("/v1/orders/Q1%00URL/events", json=event, headers=ACME).status_code == 404
    _problem(client.get("/v1/orders?site_id=site%00a", headers=ACME), 400, "/query/site_id")
    _problem(client.get("/v1/orders/Q1-URL?manufacturer_id=acme%00", headers=ADMIN), 400,
             "/query/manufacturer_id")
    _problem(client.get("/v1/orders", params={"updated_since": TOO_EARLY}, headers=ACME), 400,
             "/query/updated_since")
    forged = base64.urlsafe_b64encode(orjson.dumps([TOO_EARLY, 1])).decode().rstrip("=")
    _problem(client.get("/v1/orders", params={"cursor": forged}, headers=ACME), 400, "/query/cursor")
    assert client.get("/v1/orders", headers=ACME).json()["items"][0]["order_id"] == "Q1-URL"


def test_safety_log_paging_id_beyond_the_id_column_is_refused_by_name(client):
    _problem(client.get("/v1/admin/safety-log?before_id=2147483648", headers=ADMIN), 400,
             "/query/before_id")
    assert client.get(f"/v1/admin/safety-log?before_id={2**31 - 1}", headers=ADMIN).status_code == 200
