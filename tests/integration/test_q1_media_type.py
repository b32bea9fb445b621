"""A JSON body sent with a non-JSON Content-Type (``curl -d`` without ``-H 'Content-Type:
application/json'`` sends a form type) is answered ``415 unsupported-media-type`` saying what to send,
not a 422 whose reason ("a valid dictionary") points at nothing; JSON media types still work."""

from __future__ import annotations

import json

from tests.conftest import ACME, event_body, order_body

JSON_HEADERS = {**ACME, "Content-Type": "application/json"}


def test_form_or_text_content_type_is_415_naming_json(client):
    body = json.dumps(order_body("Q1-MT"))
    for media_type in ("application/x-www-form-urlencoded", "text/plain"):
        response = client.post("/v1/orders", content=body, headers={**ACME, "Content-Type": media_type})
        assert response.status_code == 415, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["code"] == "unsupported-media-type"
        assert problem["status"] == 415
        assert "application/json" in problem["detail"]
    assert client.get("/v1/orders/Q1-MT", headers=ACME).status_code == 404  # nothing stored


def test_json_media_types_are_accepted(client):
    body = json.dumps(order_body("Q1-MT2"))
    created = client.post(
        "/v1/orders", content=body, headers={**ACME, "Content-Type": "application/json; charset=utf-8"}
    )
    assert created.status_code == 201, created.text
    event = json.dumps(event_body("Q1-MT-E1", "order.confirmed", "2026-11-25T09:00:00Z"))
    posted = client.post("/v1/orders/Q1-MT2/events", content=event,
                         headers={**ACME, "Content-Type": "application/json"})
    assert posted.status_code == 201, posted.text


def test_a_json_array_is_still_a_422_at_the_root(client):
    response = client.post("/v1/orders", content=b"[]", headers={**ACME, "Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == ""


def test_json_nested_too_deep_to_parse_is_malformed_json(client):
    for body in ("[" * 100_000 + "]" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000):
        response = client.post("/v1/orders", content=body, headers=JSON_HEADERS)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "malformed-json"
    assert client.get("/healthz").status_code == 200
