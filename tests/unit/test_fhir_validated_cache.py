"""``mappings.fhir.model.validated`` caches the dump of each distinct content: the cache must never
change what it returns, share state between callers, or let invalid content through."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from mappings.fhir.model import _validate, _validated_json, validated


def _organization(name: str) -> dict:
    return {"resourceType": "Organization", "id": "org-1", "name": name,
            "identifier": [{"system": "https://example.org/orgs", "value": "o-1"}]}


def test_cached_result_equals_uncached_validation() -> None:
    resource = _organization("Cached Org")
    assert validated(resource) == _validate(resource)
    assert validated(resource) == _validate(resource)  # second call comes from the cache


def test_each_call_returns_an_independent_dict() -> None:
    resource = _organization("Independent Org")
    first = validated(resource)
    first["name"] = "mutated by a caller"
    first["identifier"][0]["value"] = "mutated"
    second = validated(resource)
    assert second["name"] == "Independent Org"
    assert second["identifier"][0]["value"] == "o-1"


def test_repeats_hit_the_cache() -> None:
    resource = _organization("Hit Org")
    validated(resource)
    hits = _validated_json.cache_info().hits
    validated(resource)
    assert _validated_json.cache_info().hits == hits + 1


def test_invalid_content_raises_every_time() -> None:
    bad = {"resourceType": "Organization", "id": "org-bad", "active": "not-a-boolean"}
    for _ in range(2):
        with pytest.raises(ValidationError):
            validated(bad)


def test_content_that_is_not_plain_json_is_validated_directly() -> None:
    resource = {"resourceType": "Task", "id": "t-1", "status": "requested", "intent": "order",
                "authoredOn": datetime(2026, 3, 2, 14, 0, tzinfo=UTC)}
    assert validated(resource) == _validate(resource)


def test_invalid_content_of_a_compiled_shape_raises_the_r4b_error() -> None:
    """The compiled fast path never accepts what R4B refuses: a bad leaf falls back and raises."""
    from fhir.resources.R4B.organization import Organization

    validated(_organization("Shape Org"))  # compiles the shape
    bad = {**_organization("Shape Org"), "id": "bad id!"}
    with pytest.raises(ValidationError) as raised:
        validated(bad)
    with pytest.raises(ValidationError) as expected:
        Organization.model_validate(bad)
    assert raised.value.errors() == expected.value.errors()
