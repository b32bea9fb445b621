"""Transport-level refusals: 400 malformed JSON, 413 too large (declared and streamed), FastAPI's
own 404/405 as problem+json; none of them change stored data and the server keeps serving."""

from __future__ import annotations

import json

import pytest
from sqlmodel import Session, select

from gateway.store.tables import EventRow, OrderRow
from tests.conftest import ACME, order_body

JSON = {**ACME, "content-type": "application/json"}


def _rows(engine):
    with Session(engine) as session:
        return len(session.exec(select(OrderRow)).all()), len(session.exec(select(EventRow)).all())


def _problem(r, status, code):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert set(body) >= {"type", "title", "status", "detail", "code", "errors"}
    assert body["code"] == code and body["status"] == status
    assert body["type"] == f"https://cgt-gateway.example.org/problems/{code}"
    return body


@pytest.mark.parametrize("raw", [b'{"order_id": "A-1"', b"", b"not json", b'{"a": 1,}', b"\xff\xfe"])
def test_malformed_json_is_400(client, engine, raw):
    _problem(client.post("/v1/orders", content=raw, headers=JSON), 400, "malformed-json")
    client.post("/v1/orders", json=order_body(), headers=ACME)
    _problem(client.post("/v1/orders/ORD-1/events", content=raw, headers=JSON), 400, "malformed-json")
    assert _rows(engine) == (1, 1)


def test_declared_body_over_the_limit_is_413(client, engine, settings):
    big = json.dumps(order_body(note="x" * (settings.max_body_bytes + 10)))
    _problem(client.post("/v1/orders", content=big, headers=JSON), 413, "payload-too-large")
    assert _rows(engine) == (0, 0)
    assert client.post("/v1/orders", json=order_body(), headers=ACME).status_code == 201  # still serving


def test_streamed_body_over_the_limit_is_413(client, engine, settings):
    chunk = b"x" * 65536

    def chunks():
        yield b'{"order_id": "ORD-1", "note": "'
        for _ in range(settings.max_body_bytes // len(chunk) + 2):
            yield chunk
        yield b'"}'

    r = client.post("/v1/orders", content=chunks(), headers=JSON)  # chunked: no Content-Length
    _problem(r, 413, "payload-too-large")
    assert _rows(engine) == (0, 0)
    assert client.get("/healthz").status_code == 200


def test_body_just_under_the_limit_is_read(client, settings):
    body = order_body(note="n")
    size = len(json.dumps(body).encode())
    assert size < settings.max_body_bytes
    r = client.post("/v1/orders", content=json.dumps(body), headers=JSON)
    assert r.status_code == 201


def test_unknown_route_and_wrong_method_are_problems(client):
    _problem(client.get("/v1/nothing-here", headers=ACME), 404, "not-found")
    _problem(client.delete("/v1/orders", headers=ACME), 405, "method-not-allowed")


def test_bad_query_parameters_are_400_naming_them(client):
    # issue 11: a malformed parameter is 400 invalid-parameter (a bad body stays 422 validation-failed)
    body = _problem(client.get("/v1/orders?limit=0&status=bogus", headers=ACME), 400, "invalid-parameter")
    assert {e["pointer"] for e in body["errors"]} == {"/query/limit", "/query/status"}
    body = _problem(client.get("/v1/orders?cursor=!!!", headers=ACME), 400, "invalid-parameter")
    assert body["errors"][0]["pointer"] == "/query/cursor"
    body = _problem(
        client.get("/v1/orders?updated_since=2026-01-01T00:00:00", headers=ACME), 400, "invalid-parameter"
    )
    assert body["errors"][0]["pointer"] == "/query/updated_since"


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"


def test_readiness_fails_without_database(settings, tmp_path):
    from fastapi.testclient import TestClient

    from gateway.bootstrap import create_app
    from gateway.store.db import make_engine

    broken = make_engine("postgresql://nobody@127.0.0.1:1/none")
    with TestClient(create_app(settings, engine=broken), raise_server_exceptions=False) as c:
        _problem(c.get("/readyz"), 503, "not-ready")
        assert c.get("/healthz").status_code == 200
