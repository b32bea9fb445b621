"""The OpenAPI document: FastAPI's, made accurate where the runtime validates by hand.

Documentation only; no route, model or validation path changes here.  :func:`install_openapi` replaces
``app.openapi`` with :func:`build_openapi`, which post-processes FastAPI's document:

* The event body (``POST /v1/orders/{order_id}/events`` and the preview's ``events[]``) is one schema
  per event type, a ``oneOf`` with a discriminator on ``type``; each variant's ``data`` is the JSON
  schema of that type's data model (``mappings.events.EVENT_DATA_MODELS``).  The runtime still accepts
  ``data`` as a mapping and validates it against the type's model afterwards, so its errors keep
  pointing at ``/data/<field>``.
* Every ``/fhir`` operation answers errors as an OperationOutcome (``application/fhir+json``), never
  FastAPI's 422 ``HTTPValidationError``; unreferenced FastAPI validation schemas are dropped.
* Descriptions carry no reStructuredText (double backticks, ``:class:`` roles) and no notes meant for
  the code's maintainers.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from pydantic.json_schema import models_json_schema

from gateway.api.problem import PROBLEM_MEDIA_TYPE
from mappings.domain import EventType
from mappings.events import EVENT_DATA_MODELS

__all__ = [
    "EVENT_UNION",
    "OPERATION_OUTCOME",
    "POSTABLE_EVENT_TYPES",
    "build_openapi",
    "clean_text",
    "install_openapi",
]

REF = "#/components/schemas/"
EVENT_UNION = "Event"  # the component: one schema per event type, discriminated on ``type``
OPERATION_OUTCOME = "OperationOutcome"
FHIR_JSON = "application/fhir+json"
#: Event types a manufacturer posts (``order.placed`` is ``POST /v1/orders``).
POSTABLE_EVENT_TYPES: tuple[EventType, ...] = tuple(t for t in EventType if t is not EventType.order_placed)

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|attr|data|exc|obj|ref|const):`~?([^`]+)`")
_DOUBLE_BACKTICKS = re.compile(r"``([^`]+)``")

_EVENT_DESCRIPTION = (
    "A status event of one order. `event_id` is unique per manufacturer across all its orders: the same "
    "`event_id` with the same body is an idempotent repeat (200), with another body `409 duplicate-event`. "
    "`data` depends on `type` (one schema per type below); an invalid field is answered `422 "
    "validation-failed` with its pointer (`/data/start`)."
)

_OUTCOME_SCHEMA: dict[str, Any] = {
    "title": "OperationOutcome",
    "description": "FHIR R4 OperationOutcome: every /fhir error, with the issue code matching the status.",
    "type": "object",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
        "issue": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["severity", "code"],
                "properties": {
                    "severity": {"type": "string", "enum": ["fatal", "error", "warning", "information"]},
                    "code": {"type": "string", "description": "FHIR issue type, e.g. invalid, not-found, "
                             "forbidden, security, not-supported, too-costly, transient"},
                    "diagnostics": {"type": "string"},
                    "expression": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}

_FHIR_ERRORS: dict[str, str] = {
    "400": "Invalid parameter (issue code invalid), or a search that is not supported",
    "401": "Missing or invalid bearer token (issue code login)",
    "403": "The token's scopes or role do not allow this interaction (issue code forbidden)",
    "404": "Unknown resource type or id, or a resource of another tenant (issue code not-found)",
    "406": "A _format or Accept that is not FHIR JSON (issue code not-supported)",
    "503": "Database unavailable (issue code transient); retry later",
}
_FHIR_BODY_ERRORS: dict[str, str] = {
    "413": "Request body too large (issue code too-costly)",
    "415": "Unsupported media type (issue code not-supported)",
    "409": "The order no longer takes this request (issue code conflict or business-rule)",
    "422": "The resource is not acceptable (issue code invalid or business-rule; expression names the "
           "element)",
}

#: Summaries and descriptions for operations whose docstrings speak to the code's maintainers.
_OPERATIONS: dict[tuple[str, str], tuple[str, str]] = {
    ("get", "/fhir/metadata"): (
        "CapabilityStatement", "The server's CapabilityStatement: resources, interactions, search "
                               "parameters and the SMART scopes."),
    ("get", "/fhir/{resource_type}"): (
        "Search (the EHR's poll)", "Search a resource type (Task, ServiceRequest, Patient, ...); the "
        "results are a searchset Bundle, paged with Bundle.link[next]. Typical poll: "
        "GET /fhir/Task?_lastUpdated=gt<watermark>&_sort=_lastUpdated."),
    ("post", "/fhir/{resource_type}/_search"): (
        "Search with a form body", "As GET [type]?...: the parameters of the "
        "application/x-www-form-urlencoded body, ANDed with the query string's."),
    ("get", "/fhir/{resource_type}/_history"): (
        "Type history", "Every version of the resource type the token may read, as a history Bundle."),
    ("get", "/fhir/{resource_type}/{resource_id}/_history"): (
        "Instance history", "Every version of one resource, as a history Bundle."),
    ("get", "/fhir/{resource_type}/{resource_id}/_history/{version_id}"): (
        "Version read (vread)", "One version of a resource."),
    ("get", "/fhir/{resource_type}/{resource_id}"): (
        "Read", "The current version of a resource (ETag, Last-Modified, If-None-Match and "
                "If-Modified-Since honoured)."),
    ("post", "/fhir/Task"): (
        "Create a site request Task", "A site asks to cancel, hold, release or change an order: a Task "
        "with intent order, focus the order's ServiceRequest and a code from the site-request CodeSystem "
        "(docs/inbound-fhir.md). 201 with Location."),
    ("post", "/fhir/Procedure"): (
        "Record an infusion (Procedure)", "A site reports the product infused: a completed Procedure "
        "basedOn the order's ServiceRequest (docs/inbound-fhir.md). 201 with no body and Location the "
        "order's Task."),
    ("get", "/healthz"): ("Liveness", "The process is up."),
    ("get", "/readyz"): ("Readiness", "The database is reachable (503 not-ready otherwise)."),
}


def clean_text(text: str) -> str:
    """Markdown for a reader of the API: ``:role:`x``` and double backticks become single backticks."""
    return _DOUBLE_BACKTICKS.sub(r"`\1`", _ROLE.sub(lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", text))


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _clean_descriptions(document: dict[str, Any]) -> None:
    for node in _walk(document):
        for key in ("description", "summary"):
            if isinstance(node.get(key), str):
                node[key] = clean_text(node[key])


def _add_schemas(schemas: dict[str, Any], new: dict[str, Any]) -> None:
    for name, schema in new.items():
        if name in schemas and schemas[name] != schema:
            raise ValueError(f"OpenAPI component {name!r} would be defined twice, differently")
        schemas[name] = schema


def _variant_name(event_type: EventType) -> str:
    return EVENT_DATA_MODELS[event_type].__name__.removesuffix("Data") + "Event"


def _event_schemas(event_in: dict[str, Any]) -> dict[str, Any]:
    """The per-type event schemas, their data schemas and the discriminated union ``Event``."""
    models = [(EVENT_DATA_MODELS[t], "validation") for t in POSTABLE_EVENT_TYPES]
    refs, defs = models_json_schema(models, ref_template=REF + "{model}")
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    mapping: dict[str, str] = {}
    for event_type in POSTABLE_EVENT_TYPES:
        data_ref = refs[(EVENT_DATA_MODELS[event_type], "validation")]["$ref"]
        data_schema = schemas[data_ref.removeprefix(REF)]
        properties = copy.deepcopy(event_in.get("properties", {}))
        properties["type"] = {"type": "string", "enum": [event_type.value], "title": "Type"}
        properties["data"] = {"$ref": data_ref}
        required = [name for name in event_in.get("required", []) if name != "data"]
        if data_schema.get("required"):
            required.append("data")
        else:
            properties["data"] = {"$ref": data_ref, "default": {}}
        name = _variant_name(event_type)
        schemas[name] = {
            "title": name,
            "description": f"An event of type `{event_type.value}`.",
            "type": "object",
            "additionalProperties": False,
            "required": required,
            "properties": properties,
        }
        mapping[event_type.value] = REF + name
    schemas[EVENT_UNION] = {
        "title": EVENT_UNION,
        "description": _EVENT_DESCRIPTION,
        "oneOf": [{"$ref": ref} for ref in mapping.values()],
        "discriminator": {"propertyName": "type", "mapping": mapping},
    }
    return schemas


def _replace_refs(document: dict[str, Any], old: str, new: str) -> None:
    for node in _walk(document):
        if node.get("$ref") == old:
            node["$ref"] = new


def _referenced(document: dict[str, Any], name: str) -> bool:
    return any(node.get("$ref") == REF + name for node in _walk(document))


def _document_events(document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    event_in = schemas.get("EventIn")
    if event_in is None:
        return
    _add_schemas(schemas, _event_schemas(event_in))
    _replace_refs(document, REF + "EventIn", REF + EVENT_UNION)
    event_in["description"] = (f"Every event's common shape, `data` any object; the request bodies use "
                               f"`{EVENT_UNION}`, which has one schema per event type.")


def _outcome(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {FHIR_JSON: {"schema": {"$ref": REF + OPERATION_OUTCOME}}}}


#: Request bodies the /fhir routes read by hand (FastAPI cannot see them).
_FHIR_BODIES: dict[tuple[str, str], tuple[str, str]] = {
    ("post", "/fhir/Task"): (FHIR_JSON, "A FHIR R4 Task (the site's request)"),
    ("post", "/fhir/Procedure"): (FHIR_JSON, "A FHIR R4 Procedure (status completed)"),
    ("post", "/fhir/{resource_type}/_search"): ("application/x-www-form-urlencoded", "Search parameters"),
}


def _document_fhir(document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas[OPERATION_OUTCOME] = _OUTCOME_SCHEMA
    for (method, path), (media_type, description) in _FHIR_BODIES.items():
        operation = document.get("paths", {}).get(path, {}).get(method)
        if operation is not None and "requestBody" not in operation:
            operation["requestBody"] = {"required": True, "content": {media_type: {"schema": {
                "type": "object", "description": description}}}}
    for path, operations in document.get("paths", {}).items():
        if not (path == "/fhir" or path.startswith("/fhir/")):
            continue
        for method, operation in operations.items():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            responses.pop("422", None)  # FastAPI's HTTPValidationError: never answered under /fhir
            for status, response in responses.items():
                if status.startswith("2") and "content" in response:
                    response["content"] = {FHIR_JSON: {"schema": {
                        "type": "object", "description": "A FHIR R4 resource or Bundle"}}}
            errors = dict(_FHIR_ERRORS)
            if method in ("post", "put", "patch"):
                errors.update(_FHIR_BODY_ERRORS)
            for status, description in errors.items():
                responses.setdefault(status, _outcome(description))
            responses["default"] = _outcome("Any other failure (500 issue code exception)")
    for name in ("HTTPValidationError", "ValidationError"):
        if name in schemas and not _referenced(document, name):
            del schemas[name]


def _document_problems(document: dict[str, Any]) -> None:
    """A remaining FastAPI 422 outside /fhir: the API answers it as problem+json (validation-failed)."""
    for node in _walk(document.get("paths", {})):
        response = node.get("422")
        if isinstance(response, dict) and _references(response, "HTTPValidationError"):
            node["422"] = {"description": "RFC 9457 problem details (validation-failed, errors[] with "
                                          "a pointer per field)",
                           "content": {PROBLEM_MEDIA_TYPE: {}}}


def _references(node: Any, name: str) -> bool:
    return any(item.get("$ref") == REF + name for item in _walk(node))


def _describe_operations(document: dict[str, Any]) -> None:
    for (method, path), (summary, description) in _OPERATIONS.items():
        operation = document.get("paths", {}).get(path, {}).get(method)
        if operation is not None:
            operation["summary"], operation["description"] = summary, description


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document for ``app``, post-processed as the module says."""
    document = copy.deepcopy(FastAPI.openapi(app))  # FastAPI's own, as it would serve it
    _document_events(document)
    _document_problems(document)
    _document_fhir(document)
    _describe_operations(document)
    schemas = document.get("components", {}).get("schemas", {})
    if "EventType" in schemas:
        schemas["EventType"]["description"] = "Event types (order.placed is created by POST /v1/orders)."
    _clean_descriptions(document)
    return document


def install_openapi(app: FastAPI) -> None:
    """``app.openapi()`` (and ``/openapi.json``, ``/docs``) serve :func:`build_openapi`, built once."""

    built: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        if not built:
            built.append(build_openapi(app))
        return built[0]

    setattr(app, "openapi", openapi)  # noqa: B010 (FastAPI's documented way to customise the document)


