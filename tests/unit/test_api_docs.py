"""The API documentation tells the truth: the OpenAPI document (per-event-type ``data`` schemas, FHIR
errors as OperationOutcome, clean descriptions) and README's API table (every route of the app)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import create_engine

from gateway.api.openapi import EVENT_UNION, POSTABLE_EVENT_TYPES, clean_text
from gateway.bootstrap import create_app
from gateway.config import load_settings
from mappings.domain import EventType
from mappings.events import EVENT_DATA_MODELS, EventIn
from tests.conftest import event_body, order_body

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "gateway" / "demo" / "gateway.yaml"
REF = "#/components/schemas/"


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app(load_settings(DEMO), engine=create_engine("sqlite://"))


@pytest.fixture(scope="module")
def document(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _resolve(document: dict[str, Any], ref: str) -> dict[str, Any]:
    schema: dict[str, Any] = document["components"]["schemas"][ref.removeprefix(REF)]
    return schema


def test_the_event_body_is_a_discriminated_union_with_every_event_type(document):
    body = document["paths"]["/v1/orders/{order_id}/events"]["post"]["requestBody"]
    union = _resolve(document, body["content"]["application/json"]["schema"]["$ref"])
    assert union["discriminator"]["propertyName"] == "type"
    mapping = union["discriminator"]["mapping"]
    assert set(mapping) == {t.value for t in EventType} - {"order.placed"}
    assert sorted(item["$ref"] for item in union["oneOf"]) == sorted(mapping.values())
    for event_type, ref in mapping.items():
        variant = _resolve(document, ref)
        assert variant["properties"]["type"]["enum"] == [event_type]
        data = _resolve(document, variant["properties"]["data"]["$ref"])
        model = EVENT_DATA_MODELS[EventType(event_type)]
        assert set(data.get("properties", {})) == set(model.model_fields), event_type
        assert set(data.get("required", [])) == {n for n, f in model.model_fields.items() if f.is_required()}
        assert ("data" in variant["required"]) == bool(data.get("required")), event_type
    scheduled = _resolve(document, mapping["apheresis.scheduled"])
    data = _resolve(document, scheduled["properties"]["data"]["$ref"])
    assert data["required"] == ["start"]
    failed = _resolve(document, _resolve(document, mapping["release.failed"])["properties"]["data"]["$ref"])
    assert failed["properties"]["disposition"]["enum"] == [
        "remanufacture", "exception_release", "not_releasable"]
    refs = {value for key, value in _walk(document["paths"]) if key == "$ref"}
    assert REF + "EventIn" not in refs  # every body points at the union
    preview = document["components"]["schemas"]["PreviewRequest"]["properties"]["events"]["items"]
    assert preview == {"$ref": REF + EVENT_UNION}
    assert "unique per manufacturer" in union["description"]


def test_the_runtime_still_validates_data_after_the_type():
    """Documentation only: EventIn keeps data as a mapping, checked against the type's model afterwards."""
    event = EventIn.model_validate({"event_id": "E-1", "type": "apheresis.scheduled",
                                    "occurred_at": "2026-01-01T00:00:00Z", "coi": "X", "data": {}})
    with pytest.raises(ValidationError) as caught:
        event.typed_data()
    assert caught.value.errors()[0]["loc"] == ("start",)
    assert len(POSTABLE_EVENT_TYPES) == len(EventType) - 1


def test_a_bad_event_data_field_still_points_at_data(client):
    headers = {"Authorization": "Bearer demo-acme-token"}
    assert client.post("/v1/orders", json=order_body(), headers=headers).status_code == 201
    body = event_body("E-1", "apheresis.scheduled", "2026-11-25T09:00:00Z", data={"start": "not a time"})
    response = client.post("/v1/orders/ORD-1/events", headers=headers, json=body)
    assert response.status_code == 422
    assert [e["pointer"] for e in response.json()["errors"]] == ["/data/start"]


def test_fhir_routes_answer_errors_as_operation_outcome(document):
    fhir = {path: ops for path, ops in document["paths"].items() if path.startswith("/fhir/")}
    assert fhir
    for path, operations in fhir.items():
        for method, operation in operations.items():
            responses = operation["responses"]
            for status, response in responses.items():
                refs = {v for k, v in _walk(response) if k == "$ref"}
                assert REF + "HTTPValidationError" not in refs, (method, path, status)
                if status[0] in "45" or status == "default":
                    assert response["content"] == {
                        "application/fhir+json": {"schema": {"$ref": REF + "OperationOutcome"}}
                    }, (method, path, status)
            assert {"400", "401", "404"} <= set(responses), (method, path)
    assert not any(k == "$ref" and v == REF + "HTTPValidationError" for k, v in _walk(document))
    task_body = document["paths"]["/fhir/Task"]["post"]["requestBody"]["content"]
    assert list(task_body) == ["application/fhir+json"]
    outcome = document["components"]["schemas"]["OperationOutcome"]
    assert outcome["properties"]["resourceType"]["enum"] == ["OperationOutcome"]


def test_descriptions_carry_no_internal_markup(document):
    texts = [value for key, value in _walk(document)
             if key in ("description", "summary") and isinstance(value, str)]
    assert texts
    for text in texts:
        assert "``" not in text, text
        assert not re.search(r":(class|meth|func|mod|attr|data|exc):`", text), text
        assert "see the module" not in text, text
    assert clean_text("Body of ``POST /x``; :meth:`typed_data`, :class:`~a.b.Model`") == (
        "Body of `POST /x`; `typed_data`, `Model`")


def test_the_bearer_scheme_is_documented(document):
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert document["paths"]["/v1/orders"]["post"]["security"] == [{"bearer": []}]


# ------------------------------------------------------------------ README's API table

_ROUTE_IN_CELL = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`?\s]*)[^`]*`")


def _readme_routes() -> set[tuple[str, str]]:
    """(method, path) of every route named in the first cell of a row of README's API table."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## API\n", 1)[1].split("\n## ", 1)[0]
    table = section.strip().split("\n\n")[0].splitlines()
    assert table[0].startswith("| Method and path |"), "README.md: ## API starts with its table"
    routes = set()
    for line in table[2:]:
        first_cell = line.split(" | ")[0]
        routes |= set(_ROUTE_IN_CELL.findall(first_cell))
    return routes


def _app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves, HEAD twins and catch-alls (``{x:path}``) aside."""
    try:
        from fastapi.routing import iter_route_contexts  # FastAPI >= 0.165: routers stay nested
        routes: list[Any] = list(iter_route_contexts(app.routes))
    except ImportError:  # pragma: no cover - older FastAPI flattens included routers
        routes = list(app.routes)
    served = set()
    for route in routes:
        path, methods = getattr(route, "path", None), getattr(route, "methods", None)
        if not path or not methods or ":path}" in path or path == "/docs/oauth2-redirect":
            continue
        served |= {(method, path) for method in methods if method != "HEAD"}
    return served


def test_readme_api_table_lists_every_route(app):
    served, documented = _app_routes(app), _readme_routes()
    missing = sorted(served - documented)
    assert not missing, "README.md's API table (## API) has no row for: " + ", ".join(
        f"`{method} {path}`" for method, path in missing)
    # A row for a route the app does not serve is stale; the console's rows are checked once it is mounted.
    console_mounted = any(path.startswith("/console") for _, path in served)
    stale = sorted(r for r in documented - served if console_mounted or not r[1].startswith("/console"))
    assert not stale, "README.md's API table names routes the app does not serve: " + ", ".join(
        f"`{method} {path}`" for method, path in stale)


def test_demo_site_names_agree_with_their_profiles():
    from mappings.profile.loader import load_profile

    settings = load_settings(DEMO)
    for site in settings.sites:
        profile = load_profile((DEMO.parent / site.profile).resolve())
        assert site.name == profile.name, site.id
