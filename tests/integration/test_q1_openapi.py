"""OpenAPI at /docs tells an outside client what it will really get: the 200 of an identical repeat,
and RFC 9457 problem+json (not FastAPI's default validation schema) for every error of the manufacturer,
admin and preview routes, including 415 for a non-JSON body."""

from __future__ import annotations

PROBLEM = "application/problem+json"


def test_openapi_documents_repeats_and_problem_responses(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/orders", "/v1/orders/{order_id}/events"):
        responses = paths[path]["post"]["responses"]
        assert {"200", "201", "400", "401", "403", "404", "409", "413", "415", "422"} <= set(responses)
    checks = [
        ("/v1/orders", "post", ("400", "401", "403", "409", "413", "415", "422")),
        ("/v1/orders", "get", ("401", "403", "422")),
        ("/v1/orders/{order_id}", "get", ("401", "404", "409", "422")),
        ("/v1/admin/safety-log", "get", ("401", "403", "422")),
        ("/v1/sites/{site_id}/preview", "post", ("400", "401", "403", "404", "413", "415", "422")),
    ]
    for path, method, codes in checks:
        responses = paths[path][method]["responses"]
        for code in codes:
            assert code in responses, (path, method, code)
            assert list(responses[code]["content"]) == [PROBLEM], (path, method, code)
