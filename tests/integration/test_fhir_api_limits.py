"""A FHIR request over the body limit is refused with an OperationOutcome (``too-costly``); every
other path keeps its problem+json.  HEAD routes stay out of the OpenAPI document."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from gateway.bootstrap import create_app
from gateway.config import load_settings
from tests.conftest import ACME, ADMIN, order_body


@pytest.fixture
def small(settings, engine):
    tight = load_settings(settings.config, database_url=settings.database_url, max_body_bytes=200)
    with TestClient(create_app(tight, engine=engine), raise_server_exceptions=False) as client:
        yield client


def test_fhir_body_over_the_limit_is_an_operation_outcome(small):
    form = {"group-identifier": "x" * 500}
    response = small.post("/fhir/Task/_search", data=form, headers=ADMIN)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/fhir+json"
    issue = response.json()["issue"][0]
    assert response.json()["resourceType"] == "OperationOutcome"
    assert (issue["severity"], issue["code"]) == ("error", "too-costly")
    assert "200 bytes" in issue["diagnostics"]

    def chunks():
        yield b"group-identifier=" + b"x" * 150
        yield b"x" * 150

    streamed = small.post("/fhir/Task/_search", content=chunks(), headers={
        **ADMIN, "Content-Type": "application/x-www-form-urlencoded"})
    assert streamed.status_code == 413 and streamed.json()["issue"][0]["code"] == "too-costly"


def test_other_paths_over_the_limit_stay_problem_json(small):
    response = small.post("/v1/orders", json=order_body("BIG-1"), headers=ACME)
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "payload-too-large"


def test_small_bodies_and_gets_pass(small):
    assert small.post("/fhir/Task/_search", data={"status": "requested"}, headers=ADMIN).status_code == 200
    assert small.get("/fhir/Task", headers=ADMIN).status_code == 200


def test_head_routes_are_not_in_the_openapi_document(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert all("head" not in operations for operations in paths.values())
    assert "get" in paths["/fhir/{resource_type}"]
