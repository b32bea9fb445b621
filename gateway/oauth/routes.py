"""``POST /oauth/token`` (SMART Backend Services) and ``GET /.well-known/smart-configuration``
(also under the FHIR base, ``/fhir/.well-known/smart-configuration``, where SMART clients look).

The token request is form-encoded: ``grant_type=client_credentials``, ``client_assertion_type=
urn:ietf:params:oauth:client-assertion-type:jwt-bearer``, ``client_assertion`` (see
:mod:`gateway.oauth.assertions`) and ``scope``.  Each parameter at most once; others are ignored.
Answers ``{access_token, token_type: "bearer", expires_in, scope}`` or an RFC 6749 error
``{error, error_description}``, always with ``Cache-Control: no-store``:

* ``invalid_request`` 400: not a form, body over ``oauth_max_request_bytes``, a parameter missing or
  repeated, a wrong ``client_assertion_type``, an assertion over ``oauth_max_assertion_bytes``;
* ``unsupported_grant_type`` 400: ``grant_type`` other than ``client_credentials``;
* ``invalid_client`` 401: the assertion does not authenticate a client (every check of assertions.py);
* ``invalid_scope`` 400: a requested scope is unknown, or beyond the client's (never silently dropped);
* ``invalid_grant`` 400: the client authenticated but its role names a manufacturer or site that is no
  longer configured.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gateway.config import Settings, parse_role
from gateway.oauth.assertions import OAuthError, authenticate
from gateway.oauth.clients import Client, check_configured_clients
from gateway.oauth.discovery import smart_configuration
from gateway.oauth.scopes import ScopeError, covers, parse_scopes
from gateway.oauth.tokens import issue_access_token

__all__ = ["ASSERTION_TYPE", "router", "install"]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_FORM = "application/x-www-form-urlencoded"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_PARAMETERS = ("grant_type", "client_assertion_type", "client_assertion", "scope", "client_id")
_MAX_FIELDS = 20

router = APIRouter(tags=["oauth"])


def _error(exc: OAuthError) -> JSONResponse:
    return JSONResponse({"error": exc.error, "error_description": exc.description}, status_code=exc.status,
                        headers=_NO_STORE)


def _bad(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)


async def _body(request: Request, limit: int) -> bytes:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != _FORM:
        raise _bad(f"send the parameters form-encoded (Content-Type: {_FORM})")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _bad(f"the request body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _bad(f"the request body is larger than {limit} bytes")
    return bytes(body)


def _parameters(body: bytes, settings: Settings) -> dict[str, str]:
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body),
                          max_num_fields=_MAX_FIELDS)
    except UnicodeDecodeError:
        raise _bad("the form body is not UTF-8") from None
    except ValueError:
        raise _bad(f"the form body is malformed or has more than {_MAX_FIELDS} parameters") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name not in _PARAMETERS:
            continue  # RFC 6749 §3.2: unrecognized parameters are ignored
        if name in form:
            raise _bad(f"{name} is sent more than once")
        form[name] = value
    for name in ("grant_type", "client_assertion_type", "client_assertion", "scope"):
        if not form.get(name):
            raise _bad(f"{name} is required")
    if form["grant_type"] != "client_credentials":
        raise OAuthError("unsupported_grant_type",
                         f"grant_type {form['grant_type'][:40]!r} is not supported: use client_credentials")
    if form["client_assertion_type"] != ASSERTION_TYPE:
        raise _bad(f"client_assertion_type must be {ASSERTION_TYPE}")
    if len(form["client_assertion"]) > settings.oauth_max_assertion_bytes:
        raise _bad(f"client_assertion is longer than {settings.oauth_max_assertion_bytes} bytes")
    return form


def _granted(client: Client, requested: str) -> list[str]:
    """The requested scopes, each one known and within the client's; else ``invalid_scope`` naming it."""
    try:
        scopes, _atoms = parse_scopes(requested)
    except ScopeError as exc:
        raise OAuthError("invalid_scope", str(exc)) from None
    for scope in scopes:
        beyond = sorted(a for a in parse_scopes(scope)[1] if not covers(client.atoms, a))
        if beyond:
            raise OAuthError("invalid_scope", f"scope {scope!r} is beyond this client's scopes "
                             f"({' '.join(client.scopes)}): {beyond[0]} is not granted")
    return scopes


def _check_tenant(client: Client, settings: Settings) -> None:
    kind, subject = parse_role(client.role)
    known = {"manufacturer": settings.manufacturer_ids(), "site": settings.site_ids()}.get(kind)
    if known is not None and subject not in known:
        raise OAuthError("invalid_grant", f"the client's role {client.role!r} names a {kind} that is no "
                         "longer configured")


_REQUEST_BODY = {"requestBody": {"required": True, "content": {_FORM: {"schema": {
    "type": "object", "required": ["grant_type", "client_assertion_type", "client_assertion", "scope"],
    "properties": {"grant_type": {"type": "string", "enum": ["client_credentials"]},
                   "client_assertion_type": {"type": "string", "enum": [ASSERTION_TYPE]},
                   "client_assertion": {"type": "string"},
                   "scope": {"type": "string", "example": "system/Task.rs orders.read"}}}}}}}


@router.post("/oauth/token", summary="SMART Backend Services token endpoint (JWT client assertion)",
             openapi_extra=_REQUEST_BODY,
             responses={400: {"description": "RFC 6749 error"}, 401: {"description": "invalid_client"}})
async def token(request: Request) -> JSONResponse:
    context = request.app.state.context
    settings: Settings = context.settings
    try:
        form = _parameters(await _body(request, settings.oauth_max_request_bytes), settings)
        now = context.now()
        client = await run_in_threadpool(authenticate, context.engine, settings, form["client_assertion"],
                                         now)
        if form.get("client_id", client.client_id) != client.client_id:
            raise OAuthError("invalid_client", "client_id does not match the assertion's iss", 401)
        scopes = _granted(client, form["scope"])
        _check_tenant(client, settings)
        access_token, lifetime = await run_in_threadpool(issue_access_token, context.engine, settings, client,
                                                         scopes, now)
    except OAuthError as exc:
        return _error(exc)
    return JSONResponse({"access_token": access_token, "token_type": "bearer", "expires_in": lifetime,
                         "scope": " ".join(scopes)}, headers=_NO_STORE)


def _discovery(request: Request) -> dict[str, Any]:
    return smart_configuration(request.app.state.context.settings.base_url())


router.add_api_route("/.well-known/smart-configuration", _discovery, methods=["GET"],
                     summary="SMART configuration: token endpoint, auth methods, algorithms, scopes")
router.add_api_route("/fhir/.well-known/smart-configuration", _discovery, methods=["GET"],
                     include_in_schema=False, name="fhir_smart_configuration")


def install(app: FastAPI) -> None:
    """Check the configured OAuth clients (``ValueError`` naming a bad one) and add the routes."""
    check_configured_clients(app.state.context.settings)
    app.include_router(router)
