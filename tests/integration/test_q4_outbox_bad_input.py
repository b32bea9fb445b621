"""Q4 (outside QA): the outbox admin routes answer malformed input as problem+json naming the
field (PostgreSQL refuses NUL in text and integers beyond BIGINT, which was a 500), and declare
their problem+json error responses in the OpenAPI document."""

from __future__ import annotations

import pytest

from tests.conftest import ADMIN

PROBLEM = "application/problem+json"
TOO_BIG = "99999999999999999999"


@pytest.mark.parametrize(("method", "path"), [
    ("get", f"/v1/admin/outbox/{TOO_BIG}"), ("get", "/v1/admin/outbox/9223372036854775808"),
    ("get", "/v1/admin/outbox/0"), ("get", "/v1/admin/outbox/-5"),
    ("post", f"/v1/admin/outbox/{TOO_BIG}/retry"),
])
def test_a_message_id_no_message_can_have_is_404(client, method, path):
    response = getattr(client, method)(path, headers=ADMIN)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["code"] == "message-not-found"
    skip = client.post(f"/v1/admin/outbox/{TOO_BIG}/skip", json={"reason": "r"}, headers=ADMIN)
    assert skip.status_code == 404, skip.text


@pytest.mark.parametrize(("params", "field"), [
    ({"destination": "a\x00"}, "/query/destination"),
    ({"after_id": TOO_BIG}, "/query/after_id"),
])
def test_list_refuses_values_the_database_cannot_hold(client, params, field):
    response = client.get("/v1/admin/outbox", params=params, headers=ADMIN)
    assert response.status_code == 400, response.text  # invalid-parameter (issue 11)
    assert response.headers["content-type"].startswith(PROBLEM)
    assert field in response.text
    assert client.get("/v1/admin/outbox", params={"destination": "site-a:mllp"},
                      headers=ADMIN).json()["items"] == []


def test_outbox_routes_declare_problem_responses(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path, method, statuses in (
        ("/v1/admin/outbox", "get", ("401", "403", "422")),
        ("/v1/admin/outbox/{message_id}", "get", ("401", "403", "404", "422")),
        ("/v1/admin/outbox/{message_id}/retry", "post", ("401", "403", "404", "409", "422")),
        ("/v1/admin/outbox/{message_id}/skip", "post", ("401", "403", "404", "409", "422")),
        ("/v1/admin/alerts", "get", ("401", "403", "422")),
    ):
        responses = paths[path][method]["responses"]
        for status in statuses:
            assert PROBLEM in responses[status]["content"], (path, status)
