"""problem+json rendering: shape, JSON pointers from pydantic locations, escaping."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from gateway.api.problem import problem_body, problem_response
from gateway.errors import CoiError, FieldError, LifecycleError, validation_errors
from mappings.orders import OrderIn


def test_problem_response_shape():
    r = problem_response(CoiError("bad", code="coi-mismatch", errors=[FieldError("/coi", "differs")]))
    assert r.status_code == 422 and r.media_type == "application/problem+json"
    assert orjson.loads(r.body) == {
        "type": "https://cgt-gateway.example.org/problems/coi-mismatch",
        "title": "Chain of Identity check failed",
        "status": 422,
        "detail": "bad",
        "code": "coi-mismatch",
        "errors": [{"pointer": "/coi", "reason": "differs"}],
    }


def test_status_override_is_rendered():
    r = problem_response(LifecycleError("expired", code="beyond-shelf-life", status=422))
    assert r.status_code == 422 and orjson.loads(r.body)["status"] == 422


def test_401_carries_www_authenticate():
    from gateway.errors import AuthError

    assert problem_response(AuthError("no")).headers["www-authenticate"].startswith("Bearer")


def test_pointers_from_pydantic_locations():
    with pytest.raises(ValidationError) as info:
        OrderIn.model_validate({"patient": {"given": [""], "a/b~c": 1}})
    pointers = {e.pointer: e.reason for e in validation_errors(info.value.errors())}
    assert "/patient/given/0" in pointers
    assert pointers["/patient/a~1b~0c"] == "extra field not permitted"
    assert "/order_id" in pointers


def test_problem_body_without_errors_has_empty_list():
    assert problem_body(code="x", title="t", status=400, detail="d")["errors"] == []
