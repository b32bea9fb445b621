"""RFC 9457 problem details (``application/problem+json``) for every error the API returns.

One function renders a :class:`gateway.errors.GatewayError`; handlers translate FastAPI's own
errors (unknown route 404, 405, request validation) into the same shape, and anything unexpected
becomes a bare 500 without internals.

A malformed query, path or header parameter is ``400 invalid-parameter``; a bad body is ``422
validation-failed``.  ``errors[]`` lists at most ``max_error_entries`` entries (default 100, in
request order); when there were more, ``errors_truncated`` says how many more.  Only the entries
shown are ever converted, so 70,000 unknown keys cost no more than 100.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.errors import DEFAULT_MAX_ERRORS, FieldError, GatewayError, validation_errors

__all__ = [
    "PROBLEM_BASE",
    "PROBLEM_MEDIA_TYPE",
    "problem_body",
    "problem_response",
    "problem_responses",
    "MalformedJson",
    "PayloadTooLarge",
    "InvalidParameter",
    "install_problem_handlers",
]

PROBLEM_BASE = "https://cgt-gateway.example.org/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger(__name__)


class MalformedJson(GatewayError):
    code = "malformed-json"
    status = 400
    title = "The request body is not valid JSON"
    fhir_issue_code = "structure"


class PayloadTooLarge(GatewayError):
    code = "payload-too-large"
    status = 413
    title = "The request body is too large"
    fhir_issue_code = "too-costly"


class InvalidParameter(GatewayError):
    """A query, path or header parameter that is malformed (named in ``errors[]``: ``/query/limit``)."""

    code = "invalid-parameter"
    status = 400
    title = "A request parameter is malformed"
    fhir_issue_code = "invalid"


_PARAMETER_LOCS = frozenset({("query",), ("path",), ("header",), ("cookie",)})  # first part of a loc
_FASTAPI_BODY_ERROR = "There was an error parsing the body"  # FastAPI's 400 when reading a body fails
_HTTP_CODES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthenticated", "Missing or invalid bearer token"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    413: ("payload-too-large", "The request body is too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a route answering these statuses with RFC 9457 problem+json."""
    return {
        status: {"content": {PROBLEM_MEDIA_TYPE: {}}, "description": "RFC 9457 problem details"}
        for status in statuses
    }


def problem_body(
    *, code: str, title: str, status: int, detail: str, errors: list[FieldError] | None = None,
    max_errors: int = DEFAULT_MAX_ERRORS, errors_total: int | None = None,
) -> dict[str, Any]:
    """``errors_total``: how many errors there were when ``errors`` holds only the first ones."""
    errors = errors or []
    shown = errors[:max_errors]
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "errors": [{"pointer": e.pointer, "reason": e.reason} for e in shown],
    }
    more = max(len(errors), errors_total or 0) - len(shown)
    if more > 0:
        body["errors_truncated"] = more
    return body


def problem_response(error: GatewayError, headers: dict[str, str] | None = None,
                     max_errors: int = DEFAULT_MAX_ERRORS) -> JSONResponse:
    body = problem_body(
        code=error.code, title=error.title, status=error.status, detail=error.detail, errors=error.errors,
        max_errors=max_errors, errors_total=error.errors_total,
    )
    if error.status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="cgt-gateway"', **(headers or {})}
    headers = {**getattr(error, "headers", {}), **(headers or {})} or None  # e.g. 403 insufficient_scope
    return JSONResponse(body, status_code=error.status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _is_json_media_type(content_type: str) -> bool:
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def _request_validation(exc: RequestValidationError, content_type: str | None = None,
                        max_errors: int = DEFAULT_MAX_ERRORS) -> GatewayError:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return MalformedJson("The request body could not be parsed as JSON.")
    if any(e.get("type") == "missing" and tuple(e.get("loc", ())) == ("body",) for e in errors):
        return MalformedJson("The request body is empty; send a JSON object.")
    if (content_type and not _is_json_media_type(content_type)
            and any(tuple(e.get("loc", ())) == ("body",) for e in errors)):
        # FastAPI hands a non-JSON body over unparsed: say what to send instead of "not a dictionary".
        return GatewayError(
            f"The body was sent as {content_type.partition(';')[0].strip()!r}; "
            "send JSON with 'Content-Type: application/json'.",
            code="unsupported-media-type",
            status=415,
        )
    fields: list[FieldError] = []
    for err in errors[:max_errors]:  # only the entries shown are converted
        loc = tuple(err.get("loc", ()))
        where, rest = (loc[0], loc[1:]) if loc else ("body", ())
        prefix = "" if where == "body" else f"/{where}"
        fields.extend(validation_errors([{**err, "loc": rest}], prefix))
    n = len(errors)
    parameters_only = all(tuple(e.get("loc", ("body",)))[:1] in _PARAMETER_LOCS for e in errors)
    if parameters_only:
        error: GatewayError = InvalidParameter(
            f"The request has {n} malformed parameter{'s' if n != 1 else ''}.", errors=fields)
    else:
        error = GatewayError(
            f"The request has {n} invalid field{'s' if n != 1 else ''}.",
            code="validation-failed",
            status=422,
            errors=fields,
        )
    error.errors_total = n
    return error


def _max_errors(request: Request) -> int:
    context = getattr(request.app.state, "context", None)
    return int(getattr(getattr(context, "settings", None), "max_error_entries", DEFAULT_MAX_ERRORS))


def install_problem_handlers(app: FastAPI) -> None:
    async def on_gateway_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, GatewayError)
        return problem_response(exc, max_errors=_max_errors(request))

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        max_errors = _max_errors(request)
        error = _request_validation(exc, request.headers.get("content-type"), max_errors)
        if error.code == "validation-failed":
            error.title = "Request failed validation"
        elif error.code == "unsupported-media-type":
            error.title = _HTTP_CODES[415][1]
        return problem_response(error, max_errors=max_errors)

    async def on_http(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and exc.detail == _FASTAPI_BODY_ERROR:  # e.g. JSON nested too deep
            return problem_response(MalformedJson("The request body could not be parsed as JSON."))
        code, title = _HTTP_CODES.get(exc.status_code, ("http-error", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) else title
        body = problem_body(code=code, title=title, status=exc.status_code, detail=detail)
        return JSONResponse(
            body,
            status_code=exc.status_code,
            media_type=PROBLEM_MEDIA_TYPE,
            headers=getattr(exc, "headers", None),
        )

    async def on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", extra={"error_type": type(exc).__name__})
        body = problem_body(
            code="internal-error",
            title="Internal server error",
            status=500,
            detail="The gateway could not complete the request.",
        )
        return JSONResponse(body, status_code=500, media_type=PROBLEM_MEDIA_TYPE)

    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
