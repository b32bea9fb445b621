"""The ``/fhir`` endpoints: metadata, read, vread, instance/type history and type search.

Every endpoint but ``metadata`` needs a bearer token (``gateway.auth.current_principal``).  A site
token sees the resources of its own site's orders, a manufacturer token its own orders', admin
everything; whatever the caller may not see is answered exactly like what does not exist (404).
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool

from gateway.auth import FHIR_READ, FHIR_SEARCH, Principal, current_principal
from gateway.config import Settings
from gateway.fhir_api import query
from gateway.fhir_api.audit_events import note_fhir_read
from gateway.fhir_api.bundle import (
    CURSOR_PARAM,
    decode_cursor,
    encode_cursor,
    entry_etag,
    history_bundle,
    http_date,
    searchset,
)
from gateway.fhir_api.capability import capability_statement
from gateway.fhir_api.outcome import FhirError, FhirRoute, check_format, fhir_response
from gateway.fhir_api.params import (
    MAX_VERSION_ID,
    SearchQuery,
    is_fhir_id,
    is_lenient,
    parse_history,
    parse_search,
)
from gateway.fhir_api.search_limits import SearchLimits, check_raw
from gateway.fhir_api.shared import ensure_published
from gateway.store.fhir_read import PUBLIC_TYPES, Scope, StoredVersion, read_current, read_many, read_version
from gateway.store.search_params import RESOURCE_TYPES, SEARCH_PARAMS, to_us

__all__ = ["router", "scope_for"]

router = APIRouter(prefix="/fhir", route_class=FhirRoute, tags=["fhir"])
Pair = tuple[str, str]
FORM = "application/x-www-form-urlencoded"


def scope_for(principal: Principal) -> Scope:
    if principal.is_admin:
        return Scope("all")
    if principal.role in ("site", "manufacturer") and principal.subject:
        return Scope(principal.role, principal.subject)
    raise FhirError(403, "forbidden", "This token may not read FHIR resources")


def _base(request: Request) -> str:
    """This server's FHIR base URL, from ``public_base_url``: never from the request's ``Host`` header
    (a forged one would otherwise be echoed into fullUrl and links that caches keep)."""
    settings: Settings = request.app.state.context.settings
    return settings.base_url() + router.prefix


def _connect(request: Request) -> Connection:
    return request.app.state.context.engine.connect()  # type: ignore[no-any-return]


def _type(request: Request, resource_type: str) -> str:
    if resource_type not in RESOURCE_TYPES:
        raise FhirError(404, "not-supported", f"Resource type {resource_type!r} is not served here")
    if resource_type in PUBLIC_TYPES:
        ensure_published(request.app.state.context)
    return resource_type


def _id(resource_type: str, resource_id: str) -> str:
    """A path id outside the FHIR id grammar names no resource here: 404 before any SQL."""
    if not is_fhir_id(resource_id):
        raise FhirError(404, "not-found", f"{resource_type}/{resource_id!r} is not known: the id is not a "
                        "FHIR id ([A-Za-z0-9-.]{1,64})")
    return resource_id


def _version(resource_type: str, resource_id: str, version_id: str) -> int:
    """A version id is a positive integer the store's column can hold; anything else is not known."""
    if (not (version_id.isascii() and version_id.isdigit()) or len(version_id) > 10
            or not 1 <= int(version_id) <= MAX_VERSION_ID):
        raise _not_found(resource_type, resource_id, version_id)
    return int(version_id)


def _not_found(resource_type: str, resource_id: str, version: str | None = None) -> FhirError:
    what = f"{resource_type}/{resource_id}" + (f"/_history/{version}" if version else "")
    return FhirError(404, "not-found", f"{what} is not known")


def _limits(request: Request) -> SearchLimits:
    settings = request.app.state.context.settings
    return SearchLimits(settings.fhir_search_max_params, settings.fhir_search_max_values)


def _items(request: Request, *also: bytes) -> list[Pair]:
    """The query string's parameters, once their number (with ``also``'s, a form body's) is counted
    and found within ``fhir_search_max_params`` (else 400 ``too-costly``, before any parsing)."""
    check_raw(_limits(request), request.scope.get("query_string", b""), *also)
    return list(request.query_params.multi_items())


def _serve(request: Request, stored: StoredVersion, *, second_shared: bool = False) -> Response:
    """The stored version, or 304 when the client's validators show it has it.  ``second_shared``:
    an older version of the resource has the same (whole-second) ``Last-Modified``, so a copy
    dated that second may be the older one and ``If-Modified-Since`` of that second is no proof."""
    etag = entry_etag(stored.version_id)
    headers = {"ETag": etag, "Last-Modified": http_date(stored.last_updated_us)}
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        tags = {t.strip().removeprefix("W/").strip('"') for t in if_none_match.split(",")}
        if "*" in tags or str(stored.version_id) in tags:
            return Response(status_code=304, headers=headers)
    else:
        since = request.headers.get("if-modified-since")
        if since:
            try:
                modified_since = parsedate_to_datetime(since[:64])
            except (TypeError, ValueError, IndexError, OverflowError):  # garbage is no validator: ignored
                modified_since = None
            seconds = stored.last_updated_us // 1_000_000
            since_seconds = None if modified_since is None else to_us(modified_since) // 1_000_000
            if since_seconds is not None and (seconds < since_seconds or
                                              (seconds == since_seconds and not second_shared)):
                return Response(status_code=304, headers=headers)
    return fhir_response(orjson.Fragment(stored.body), headers=headers)


@router.get("/metadata", name="fhir_metadata")
def metadata(request: Request) -> Response:
    check_format(request)
    return fhir_response(capability_statement(_base(request), _limits(request)))


@router.get("/{resource_type}", name="fhir_search", dependencies=[FHIR_SEARCH])
async def search(resource_type: str, request: Request,
                 principal: Principal = Depends(current_principal)) -> Response:
    """``GET [type]?...``: the poll.  Registered right after ``metadata`` (the one other
    single-segment path) so a poll is matched early; the search runs in the thread pool."""
    return await run_in_threadpool(_search, request, principal, resource_type, _items(request))


@router.get("/{resource_type}/_history", name="fhir_type_history", dependencies=[FHIR_SEARCH])
def type_history(resource_type: str, request: Request,
                 principal: Principal = Depends(current_principal)) -> Response:
    check_format(request)
    return _history(request, principal, _type(request, resource_type), None)


@router.get("/{resource_type}/{resource_id}/_history", name="fhir_instance_history", dependencies=[FHIR_READ])
def instance_history(resource_type: str, resource_id: str, request: Request,
                     principal: Principal = Depends(current_principal)) -> Response:
    check_format(request)
    return _history(request, principal, _type(request, resource_type), _id(resource_type, resource_id))


@router.get("/{resource_type}/{resource_id}/_history/{version_id}", name="fhir_vread",
            dependencies=[FHIR_READ])
def vread(resource_type: str, resource_id: str, version_id: str, request: Request,
          principal: Principal = Depends(current_principal)) -> Response:
    check_format(request)
    scope = scope_for(principal)
    _type(request, resource_type)
    version = _version(resource_type, _id(resource_type, resource_id), version_id)
    with _connect(request) as conn:
        stored = read_version(conn, scope, resource_type, resource_id, version)
    if stored is None:
        raise _not_found(resource_type, resource_id, version_id)
    return _audited(request, principal, "fhir.vread", _serve(request, stored), stored)


def _audited(request: Request, principal: Principal, operation: str, response: Response,
             stored: StoredVersion) -> Response:
    """``response`` once the read is noted for the audit trail (not a 304: no data went out)."""
    if response.status_code == 200:
        note_fhir_read(request, principal, operation, "read", [stored])
    return response


@router.get("/{resource_type}/{resource_id}", name="fhir_read", dependencies=[FHIR_READ])
def read(resource_type: str, resource_id: str, request: Request,
         principal: Principal = Depends(current_principal)) -> Response:
    check_format(request)
    scope = scope_for(principal)
    _type(request, resource_type)
    _id(resource_type, resource_id)
    with _connect(request) as conn:
        stored = read_current(conn, scope, resource_type, resource_id)
        if stored is None:
            raise _not_found(resource_type, resource_id)
        older = None
        if stored.version_id > 1 and request.headers.get("if-modified-since"):
            older = read_version(conn, scope, resource_type, resource_id, stored.version_id - 1)
    return _audited(request, principal, "fhir.read", _serve(
        request, stored, second_shared=older is not None and
        older.last_updated_us // 1_000_000 == stored.last_updated_us // 1_000_000), stored)


@router.post("/{resource_type}/_search", name="fhir_search_post", dependencies=[FHIR_SEARCH])
async def search_post(resource_type: str, request: Request,
                      principal: Principal = Depends(current_principal)) -> Response:
    """``POST [type]/_search``: the form body's parameters, ANDed with the query string's."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != FORM:
        raise FhirError(415, "not-supported", f"POST _search takes {FORM} parameters")
    body = await request.body()
    items = _items(request, body)  # counted before the body is parsed
    try:
        form = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise FhirError(400, "invalid", "The form body is not UTF-8") from None
    return await run_in_threadpool(_search, request, principal, resource_type, items + form)


def _search(request: Request, principal: Principal, resource_type: str, items: list[Pair]) -> Response:
    check_format(request, items)
    scope = scope_for(principal)
    _type(request, resource_type)
    base = _base(request)
    lenient = is_lenient(request.headers.get("prefer"))
    after: query.SearchKey | None = None
    cursor = [v for k, v in items if k == CURSOR_PARAM]
    if cursor:
        if len(cursor) > 1 or any(k not in (CURSOR_PARAM, "_format") for k, _ in items):
            raise FhirError(400, "invalid", "_cursor comes alone: follow Bundle.link[next] as given",
                            expression=CURSOR_PARAM)
        params, key = decode_cursor(cursor[0], (int, str))
        q = parse_search(resource_type, params, lenient=False, base=base, limits=_limits(request))
        after = (key[0], key[1])
    else:
        q = parse_search(resource_type, items, lenient=lenient, base=base, limits=_limits(request))
    with _connect(request) as conn:
        if q.total or q.includes:  # several statements: one snapshot (a lone SELECT is its own)
            conn.begin()
        total = query.search_count(conn, scope, q) if q.total else None
        if q.summary_count:
            return fhir_response(searchset(base, resource_type, self_params=q.params, matches=(),
                                           includes=(), total=total, next_params=None))
        matches, next_key = query.search_page(conn, scope, q, after)
        includes = _includes(conn, scope, q, matches)
    note_fhir_read(request, principal, "fhir.search", "search", [*matches, *includes])  # none: no record
    self_params = [(CURSOR_PARAM, cursor[0])] if cursor else list(q.params)
    next_params = None if next_key is None else [(CURSOR_PARAM, encode_cursor(q.params, next_key))]
    return fhir_response(searchset(base, resource_type, self_params=self_params, matches=matches,
                                   includes=includes, total=total, next_params=next_params))


def _includes(conn: Connection, scope: Scope, q: SearchQuery,
              matches: list[StoredVersion]) -> list[StoredVersion]:
    if not q.includes or not matches:
        return []
    refs: list[tuple[str, str]] = []
    for stored in matches:
        resource = orjson.loads(stored.body)
        for include in q.includes:
            param = SEARCH_PARAMS[q.resource_type][include.split(":")[1]]
            assert param.extract is not None
            refs.extend(param.extract(resource))
    seen = {(s.resource_type, s.resource_id) for s in matches}
    wanted = [ref for ref in dict.fromkeys(refs) if ref not in seen]
    return read_many(conn, scope, wanted)


def _history(request: Request, principal: Principal, resource_type: str, resource_id: str | None) -> Response:
    scope = scope_for(principal)
    items = _items(request)
    before: query.HistoryKey | None = None
    cursor = [v for k, v in items if k == CURSOR_PARAM]
    if cursor:
        if len(cursor) > 1 or any(k not in (CURSOR_PARAM, "_format") for k, _ in items):
            raise FhirError(400, "invalid", "_cursor comes alone: follow Bundle.link[next] as given",
                            expression=CURSOR_PARAM)
        params, key = decode_cursor(cursor[0], (int, str, int))
        h = parse_history(params, lenient=False)
        before = (key[0], key[1], key[2])
    else:
        h = parse_history(items, lenient=is_lenient(request.headers.get("prefer")))
    path = resource_type if resource_id is None else f"{resource_type}/{resource_id}"
    with _connect(request) as conn:
        if resource_id is not None and read_current(conn, scope, resource_type, resource_id) is None:
            raise _not_found(resource_type, resource_id)
        versions, next_key = query.history_page(conn, scope, resource_type, resource_id, since_us=h.since_us,
                                                count=h.count, before=before)
    note_fhir_read(request, principal, "fhir.history", "read", versions)
    self_params = [(CURSOR_PARAM, cursor[0])] if cursor else list(h.params)
    next_params = None if next_key is None else [(CURSOR_PARAM, encode_cursor(h.params, next_key))]
    return fhir_response(history_bundle(_base(request), f"{path}/_history", self_params=self_params,
                                        versions=versions, next_params=next_params))


# HEAD of every read answers as its GET does (the server sends the headers, not the body); not in
# the OpenAPI document, where it would repeat each GET operation.
for _get in [r for r in router.routes if isinstance(r, APIRoute) and r.methods == {"GET"}]:
    router.add_api_route(_get.path.removeprefix(router.prefix), _get.endpoint, methods=["HEAD"],
                         name=f"{_get.name}_head", include_in_schema=False, dependencies=_get.dependencies)


@router.api_route("/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
                  include_in_schema=False)
def not_supported(path: str, request: Request) -> Response:
    if request.method in ("GET", "HEAD"):
        raise FhirError(404, "not-found", f"/fhir/{path} is not a FHIR interaction served here")
    raise FhirError(405, "not-supported", f"{request.method} /fhir/{path[:64]} is not supported: this FHIR "
                    "API serves read, vread, history and search (GET, HEAD; POST [type]/_search), and "
                    "create of Task and Procedure by a site (POST /fhir/Task, POST /fhir/Procedure); see "
                    "/fhir/metadata", headers={"Allow": "GET, HEAD"})
