"""``GET /fhir/AuditEvent`` (admin only) and the audit hooks of the API's read paths.

Search parameters (ANDed; comma-separated values ORed): ``date`` (eq/ge/gt/le/lt and a FHIR date,
dateTime or instant, repeatable: ``date=ge2026-12-01&date=lt2026-12-02``), ``agent`` (a client id or a
role: ``acme-integration``, ``site:site-a``), ``entity`` (``Task/<id>``, ``order:acme-bio/ORD-1``, ...),
``patient`` (``Patient/<id>`` or ``<id>``), ``_count`` (default ``audit_search_default_count``, at most
``audit_search_max_count``) and ``_cursor`` (the next page, as ``Bundle.link[next]`` gives it).
Records come oldest first (by their place in the chain).  Any other parameter is 400; other tokens 403.

The read paths call :func:`note_read` / :func:`note_fhir_read` only when they returned patient data;
the record is appended by the app's :class:`~gateway.audit.AuditTrail` (write-behind, at most a second late).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import orjson
from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from gateway.audit import Actor, AuditTrail
from gateway.audit.fhir import audit_event
from gateway.audit.search import AuditFilter, search_records
from gateway.auth import Principal, current_principal, needs
from gateway.fhir_api.bundle import CURSOR_PARAM, decode_cursor, encode_cursor, searchset
from gateway.fhir_api.outcome import FhirError, FhirRoute, check_format, fhir_response
from gateway.fhir_api.search_limits import SearchLimits, check_items, check_raw
from gateway.store.fhir_read import PUBLIC_TYPES, StoredVersion
from gateway.store.search_params import date_range

__all__ = ["router", "actor_for", "audit_trail", "note_read", "note_fhir_read"]

router = APIRouter(prefix="/fhir", route_class=FhirRoute, tags=["fhir"])
Pair = tuple[str, str]
_PREFIX = re.compile(r"^([a-z]{2})(?=[0-9])")
_PARAMS = ("date", "agent", "entity", "patient", "_count", "_format", CURSOR_PARAM)


def actor_for(principal: Principal, request: Request) -> Actor:
    """The audit record's who: the principal's client id and role, and the caller's address."""
    role = principal.role if principal.subject is None else f"{principal.role}:{principal.subject}"
    host = request.client.host if request.client is not None else ""
    return Actor(principal.client_id or role, role, host)


def audit_trail(request: Request) -> AuditTrail | None:
    return getattr(request.app.state, "audit", None)


def note_read(request: Request, principal: Principal, operation: str, *, action: str = "read",
              entities: Sequence[str] = (), patients: Sequence[str] = ()) -> None:
    """A REST read that returned patient data (``entities``, ``patients``): recorded write-behind."""
    trail = audit_trail(request)
    if trail is not None and request.method != "HEAD":
        trail.note_read(actor_for(principal, request), operation, action=action, entities=entities,
                        patients=patients)


def note_fhir_read(request: Request, principal: Principal, operation: str, action: str,
                   resources: Sequence[StoredVersion]) -> None:
    """A FHIR read that returned ``resources``; nothing when none (an empty poll) or on ``HEAD``.
    Their patients are found by the trail's thread, from the bodies (no parsing here)."""
    trail = audit_trail(request)
    if trail is None or request.method == "HEAD":
        return
    returned = [(s.resource_type, s.resource_id, s.body) for s in resources
                if s.resource_type not in PUBLIC_TYPES]
    if returned:  # the shared CodeSystem is no patient data
        trail.note_read(actor_for(principal, request), operation, action=action, resources=returned)


def _bad(diagnostics: str, expression: str | None = None) -> FhirError:
    return FhirError(400, "invalid", diagnostics, expression=expression)


def _values(name: str, raw: str) -> tuple[str, ...]:
    values = tuple(v for v in raw.split(","))
    if any(not v or len(v) > 200 or "\x00" in v for v in values):
        raise _bad(f"{name}: each value is 1 to 200 characters (got {raw[:64]!r})", name)
    return values


def _date(raw: str) -> tuple[str, int, int]:
    prefix, value = "eq", raw
    match = _PREFIX.match(raw)
    if match:
        prefix, value = match.group(1), raw[2:]
        if prefix not in ("eq", "ge", "gt", "le", "lt"):
            raise FhirError(400, "not-supported", f"date: prefix {prefix!r} is not supported "
                            "(use eq, gt, ge, lt, le)", expression="date")
    try:
        lo, hi = date_range(value)
    except ValueError as exc:
        raise _bad(f"date: {exc}", "date") from None
    return prefix, lo, hi


def _count(raw: str, default: int, most: int) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise _bad(f"_count must be a non-negative integer (got {raw[:32]!r})", "_count")
    return max(1, min(int(raw), most)) if raw else default


def _parse(items: Sequence[Pair], default: int, most: int) -> tuple[AuditFilter, int]:
    dates, agents, entities, patients = [], [], [], []
    count = default
    for key, raw in items:
        if key not in _PARAMS:
            raise _bad(f"Unknown search parameter {key[:64]!r} for AuditEvent (use date, agent, entity, "
                       "patient, _count)", key[:64])
        if key == "date":
            dates.append(_date(raw))
        elif key == "agent":
            agents.append(_values(key, raw))
        elif key == "entity":
            entities.append(_values(key, raw))
        elif key == "patient":
            patients.append(tuple(v if v.startswith("Patient/") else f"Patient/{v}"
                                  for v in _values(key, raw)))
        elif key == "_count":
            count = _count(raw, default, most)
    return AuditFilter(tuple(dates), tuple(agents), tuple(entities), tuple(patients)), count


def _search(request: Request, items: list[Pair]) -> Response:
    context = request.app.state.context
    settings = context.settings
    base = settings.base_url() + router.prefix
    after = 0
    cursor = [v for k, v in items if k == CURSOR_PARAM]
    if cursor:
        if len(cursor) > 1 or any(k not in (CURSOR_PARAM, "_format") for k, _ in items):
            raise FhirError(400, "invalid", "_cursor comes alone: follow Bundle.link[next] as given",
                            expression=CURSOR_PARAM)
        params, key = decode_cursor(cursor[0], (int,))
        after = int(key[0])
    else:
        params = [(k, v) for k, v in items if k != "_format"]
    where, count = _parse(params, settings.audit_search_default_count, settings.audit_search_max_count)
    with context.engine.connect() as conn:
        found = search_records(conn, where, after_seq=after, limit=count + 1)
    page = found[:count]
    matches = [StoredVersion("AuditEvent", str(r.seq), 1, r.entry.at_us,
                             orjson.dumps(audit_event(r.seq, r.entry, r.prev_sha256, r.sha256)))
               for r in page]
    next_params = ([(CURSOR_PARAM, encode_cursor(params, [page[-1].seq]))] if len(found) > count else None)
    self_params = [(CURSOR_PARAM, cursor[0])] if cursor else params
    return fhir_response(searchset(base, "AuditEvent", self_params=self_params, matches=matches, includes=(),
                                   total=None, next_params=next_params))


@router.get("/AuditEvent", name="fhir_audit_event_search",
            dependencies=[needs("admin", "system/AuditEvent.s")])
async def search_audit_events(request: Request,
                              principal: Principal = Depends(current_principal)) -> Response:
    """Audit records as FHIR AuditEvents (IHE BALP shape), admin only."""
    if not principal.is_admin:
        raise FhirError(403, "forbidden", "Only an admin token may read the audit trail")
    check_format(request)
    settings = request.app.state.context.settings
    limits = SearchLimits(settings.fhir_search_max_params, settings.fhir_search_max_values)
    check_raw(limits, request.scope.get("query_string", b""))
    items = list(request.query_params.multi_items())
    check_items(limits, items)
    return await run_in_threadpool(_search, request, items)
