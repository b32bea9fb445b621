"""FHIR responses and errors: ``application/fhir+json`` bodies and OperationOutcome for every failure.

Every route of the ``/fhir`` router runs through :class:`FhirRoute`, which renders any
:class:`gateway.errors.GatewayError` (including the 401 of ``current_principal``), Starlette
``HTTPException``, request validation errors and SQLAlchemy errors (503 ``transient`` when the
database is unreachable or locked, else 500; only the exception class is logged, never data), and
any other exception (500 ``exception``), as an OperationOutcome with the matching ``issue.code``, so
FHIR clients never see problem+json.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from starlette.exceptions import HTTPException

from gateway.errors import GatewayError

__all__ = ["FHIR_JSON", "FhirError", "FhirRoute", "fhir_response", "operation_outcome", "check_format"]

FHIR_JSON = "application/fhir+json"
_JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json", "application/json+fhir"})
_log = logging.getLogger(__name__)
_MAX_MESSAGES = 100  # as gateway.api.problem.DEFAULT_MAX_ERRORS: the /fhir routes take no body models
_MAX_ECHO = 1000  # characters of diagnostics or expression: they may quote a parameter of any size


def _clip(text: str) -> str:
    more = len(text) - _MAX_ECHO
    return text if more <= 0 else f"{text[:_MAX_ECHO]}... ({more} characters not shown)"


class FhirError(Exception):
    """A FHIR failure: HTTP ``status`` and OperationOutcome ``issue.code``."""

    def __init__(self, status: int, code: str, diagnostics: str, *, expression: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(diagnostics)
        self.status, self.code, self.diagnostics = status, code, diagnostics
        self.expression, self.headers = expression, headers or {}


def operation_outcome(code: str, diagnostics: str, *, severity: str = "error",
                      expression: str | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def fhir_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``body`` serialised with orjson (stored resources are embedded as ``orjson.Fragment``)."""
    return Response(orjson.dumps(body), status_code=status, media_type=FHIR_JSON, headers=headers)


def _error_response(exc: FhirError) -> Response:
    expression = None if exc.expression is None else _clip(exc.expression)
    return fhir_response(operation_outcome(exc.code, _clip(exc.diagnostics), expression=expression),
                         exc.status, exc.headers)


_HTTP_CODES = {401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported", 406: "not-supported",
               409: "conflict", 413: "too-costly", 415: "not-supported", 422: "invalid"}


def _as_fhir_error(exc: Exception) -> FhirError:
    if isinstance(exc, FhirError):
        return exc
    if isinstance(exc, GatewayError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else getattr(exc, "headers", None)
        return FhirError(exc.status, exc.fhir_issue_code, exc.detail, headers=headers)
    if isinstance(exc, HTTPException):
        return FhirError(exc.status_code, _HTTP_CODES.get(exc.status_code, "exception"), str(exc.detail))
    if isinstance(exc, RequestValidationError):  # at most DEFAULT_MAX_ERRORS messages, and how many more
        errors = exc.errors()
        shown = "; ".join(str(e.get("msg")) for e in errors[:_MAX_MESSAGES])
        more = len(errors) - _MAX_MESSAGES
        return FhirError(400, "invalid", shown + (f" (and {more} more)" if more > 0 else ""))
    if isinstance(exc, OperationalError):  # database unreachable, locked, out of space: try later
        _log.error("FHIR API database error: %s", type(exc.orig).__name__)
        return FhirError(503, "transient", "The resource store is unavailable; retry later",
                         headers={"Retry-After": "5"})
    if isinstance(exc, SQLAlchemyError):
        _log.error("FHIR API database error: %s", type(exc).__name__)
        return FhirError(500, "exception", "The resource store failed to answer")
    raise exc


class FhirRoute(APIRoute):
    """An APIRoute whose failures (in dependencies too) are OperationOutcomes."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def fhir_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except (FhirError, GatewayError, HTTPException, RequestValidationError, SQLAlchemyError) as exc:
                return _error_response(_as_fhir_error(exc))
            except Exception as exc:  # a bug: still an OperationOutcome, never problem+json
                _log.error("FHIR API unexpected error: %s", type(exc).__name__)  # its text may quote input
                return _error_response(FhirError(500, "exception", "The server failed to answer"))

        return fhir_handler


def check_format(request: Request, params: Sequence[tuple[str, str]] | None = None) -> None:
    """JSON only: ``_format`` and ``Accept`` asking for XML (or anything else) get 406.  ``params``:
    the search parameters when they are not only the query string's (``POST _search``)."""
    if params is None:
        fmt = request.query_params.get("_format")
    else:  # the last one, as ``query_params.get`` takes it
        fmt = next((value for key, value in reversed(params) if key == "_format"), None)
    if fmt is not None:
        if fmt.split(";")[0].strip().lower() not in _JSON_FORMATS:
            raise FhirError(406, "not-supported", f"_format={fmt} is not supported; this server speaks "
                            "FHIR JSON only (_format=json)")
        return
    accept = request.headers.get("accept")
    if not accept:
        return
    types = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if any(t in _JSON_FORMATS or t in ("*/*", "application/*") for t in types):
        return
    raise FhirError(406, "not-supported", f"Accept: {accept} is not supported; this server speaks "
                    "FHIR JSON only (application/fhir+json)")
