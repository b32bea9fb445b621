"""Inbound FHIR: a site asks for a change by ``POST /fhir/Task`` and reports an infusion by
``POST /fhir/Procedure`` (site tokens only; 403 for every other role).

What a body may hold is :mod:`mappings.inbound.fhir`.  The referenced resource (``Task.focus``: the
order's Task; ``Procedure.basedOn``: the order's ServiceRequest) must be one the site can read and
belong to one of its orders (else ``422`` naming the element); the site request is then stored and
decided by :func:`gateway.inbound.requests.receive` in one transaction.  Answers:

* ``201`` with the request Task as stored (read back from the FHIR store, ``Location:
  <base>/fhir/Task/<id>/_history/<v>``, ``ETag``, ``Last-Modified``).  Its ``status`` follows the
  decision (``completed`` applied, ``received`` awaiting the manufacturer, ``rejected`` with
  ``statusReason`` declined) and it stays readable and searchable by the site (``GET /fhir/Task?...``).
* ``POST /fhir/Procedure``: ``201`` with the site's Procedure as stored (normalised, id derived from
  the site request, its id as ``identifier``; :mod:`mappings.fhir.site_procedure`), written in the
  site request's own transaction once the infusion is applied (the product's policy, or later the
  manufacturer's accept); ``202`` with an OperationOutcome naming the request id while it awaits
  the manufacturer (no Procedure yet); ``422`` ``business-rule`` with the lifecycle's code and reason
  when it is declined at once (an order already infused or cancelled, ...).  The stored Procedure is
  read and searched like every resource (``GET /fhir/Procedure/<id>``, ``?based-on=``), by its site only.
* ``400`` (not JSON), ``415`` (not ``application/fhir+json`` / ``application/json``), ``422`` (an
  element wrong: ``issue.expression`` names it, e.g. ``Task.code``), ``413`` past ``max_body_bytes``;
  every error an OperationOutcome, with at most ``max_error_entries`` issues.
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool

from gateway.audit import Actor
from gateway.auth import Principal, current_principal, needs
from gateway.context import Context
from gateway.fhir_api.audit_events import actor_for
from gateway.fhir_api.bundle import entry_etag, http_date
from gateway.fhir_api.outcome import FhirError, FhirRoute, check_format, fhir_response
from gateway.inbound import requests
from gateway.inbound.requests import IncomingRequest, Outcome
from gateway.store.fhir_read import Scope, StoredVersion, read_current
from gateway.store.fhir_tables import FhirResourceVersion
from mappings.fhir.site_procedure import site_procedure_id
from mappings.fhir.site_request import SITE_REQUEST_SYSTEM
from mappings.ids import order_system, resource_id
from mappings.inbound.fhir import FhirSiteRequest, FieldError, read_procedure, read_request_task
from mappings.site_request import SiteRequestView

__all__ = ["router"]

router = APIRouter(prefix="/fhir", route_class=FhirRoute, tags=["fhir"])
_MEDIA_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
_V = FhirResourceVersion.__table__  # type: ignore[attr-defined]
#: The element a service refusal's pointer (``/requested/start``) stands for, by the referenced type.
_POINTER_EXPRESSION = {
    ("Task", "/requested/start"): "Task.input", ("Task", "/requested/end"): "Task.input",
    ("Task", "/requested/appointment"): "Task.input", ("Task", "/requested"): "Task.input",
    ("Task", "/reason"): "Task.note", ("ServiceRequest", "/requested/administered_at"):
    "Procedure.performedDateTime", ("ServiceRequest", "/reason"): "Procedure.note",
}


def _site(principal: Principal) -> str:
    if principal.role != "site" or not principal.subject:
        raise FhirError(403, "forbidden", "Only a site token may create a request Task or a Procedure")
    return principal.subject


async def _body(request: Request, resource_type: str) -> Any:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in _MEDIA_TYPES:
        raise FhirError(415, "not-supported", f"POST {resource_type} takes application/fhir+json")
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise FhirError(400, "structure", "The body is not JSON") from None


def _invalid(errors: list[FieldError], limit: int) -> Response:
    issues = [{"severity": "error", "code": e.code, "diagnostics": f"{e.expression}: {e.message}",
               "expression": [e.expression]} for e in errors[:limit]]
    if len(errors) > limit:
        issues.append({"severity": "information", "code": "too-costly",
                       "diagnostics": f"{len(errors) - limit} more problems not listed"})
    return fhir_response({"resourceType": "OperationOutcome", "issue": issues}, 422)


def _created(request: Request, stored: StoredVersion) -> Response:
    base = request.app.state.context.settings.base_url()
    location = f"{base}/fhir/{stored.resource_type}/{stored.resource_id}/_history/{stored.version_id}"
    return fhir_response(orjson.Fragment(stored.body), 201, headers={
        "Location": location, "ETag": entry_etag(stored.version_id),
        "Last-Modified": http_date(stored.last_updated_us)})


def _order_of(conn: Connection, site_id: str, resource_type: str, target_id: str,
              expression: str) -> tuple[str, str, StoredVersion]:
    """(manufacturer id, order id, current version) of the order whose ``resource_type`` is ``target_id``;
    422 naming ``expression`` unless it is the site's and an order's own Task / ServiceRequest."""
    stored = read_current(conn, Scope("site", site_id), resource_type, target_id)
    row = None if stored is None else conn.execute(
        sa.select(_V.c.manufacturer_id, _V.c.order_id).where(
            _V.c.resource_type == resource_type, _V.c.resource_id == target_id,
            _V.c.version_id == stored.version_id)).first()
    if stored is None or row is None or row.order_id is None or row.manufacturer_id is None:
        raise FhirError(422, "not-found", f"{resource_type}/{target_id} is not an order of this site",
                        expression=expression)
    if resource_id(resource_type, order_system(row.manufacturer_id), row.order_id) != target_id:
        raise FhirError(422, "invalid", f"{resource_type}/{target_id} is not an order's own {resource_type} "
                        "(a request Task cannot be the focus of another)", expression=expression)
    return row.manufacturer_id, row.order_id, stored


def _submit(context: Context, principal: Principal, site_id: str, read: FhirSiteRequest, raw: bytes,
            expression: str, actor: Actor) -> StoredVersion | Response:
    with context.engine.connect() as conn:
        manufacturer_id, order_id, target = _order_of(conn, site_id, read.target_type, read.target_id,
                                                      expression)
    if read.subject_id is not None:
        subject = (orjson.loads(target.body).get("subject") or {}).get("reference")
        if subject != f"Patient/{read.subject_id}":
            raise FhirError(422, "invalid", "Procedure.subject is not the patient of the order's "
                            "ServiceRequest", expression="Procedure.subject")
    incoming = IncomingRequest(
        site_id=site_id, kind=read.kind, channel="fhir", order_ref=order_id, manufacturer_id=manufacturer_id,
        requested=dict(read.requested),
        reason=read.reason, raw=raw.decode("utf-8", errors="replace"),
        sender=principal.client_id or f"site:{site_id}",
        actor=actor)
    outcome: Outcome = requests.receive(context, incoming)
    if outcome.refusal is not None:
        refusal = outcome.refusal
        where = _POINTER_EXPRESSION.get((read.target_type, refusal.pointer), expression)
        raise FhirError(422, "not-found" if refusal.code == "unknown-order" else "invalid", refusal.detail,
                        expression=where)
    request = outcome.request
    assert request is not None
    if request.task_id is not None:
        resource_type, wanted = "Task", request.task_id
    elif request.state in ("applied", "accepted"):  # an infusion recorded: the site's Procedure as stored
        resource_type = "Procedure"
        wanted = site_procedure_id(request.manufacturer_id, request.order_id, request.request_id)
    else:
        return _undecided(request, outcome)
    with context.engine.connect() as conn:
        stored = read_current(conn, Scope("site", site_id), resource_type, wanted)
    if stored is None:
        raise FhirError(500, "exception", "The stored request could not be read back")
    return stored


def _undecided(request: SiteRequestView, outcome: Outcome) -> Response:
    """A Procedure not stored (yet): ``202`` while the manufacturer decides, ``422`` declined at once."""
    ident = f"site request {request.request_id}"
    if request.state == "declined":
        code = outcome.decision_code or "declined"
        text = f"The infusion was not recorded ({ident}, {code}): {request.decision_reason or code}"
        issue = {"severity": "error", "code": "business-rule", "diagnostics": _clip(text),
                 "details": {"coding": [{"system": SITE_REQUEST_SYSTEM, "code": request.request_id}],
                             "text": code},
                 "expression": ["Procedure"]}
        return fhir_response({"resourceType": "OperationOutcome", "issue": [issue]}, 422)
    text = (f"The infusion awaits the manufacturer's decision ({ident}); the Procedure is stored once it "
            "is accepted (GET /fhir/Procedure?identifier=" + f"{SITE_REQUEST_SYSTEM}|{request.request_id})")
    issue = {"severity": "information", "code": "informational", "diagnostics": text,
             "details": {"coding": [{"system": SITE_REQUEST_SYSTEM, "code": request.request_id}],
                         "text": request.state}}
    return fhir_response({"resourceType": "OperationOutcome", "issue": [issue]}, 202)


def _clip(text: str, limit: int = 1500) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def _create(request: Request, principal: Principal, resource_type: str) -> Response:
    check_format(request)
    site_id = _site(principal)
    body = await _body(request, resource_type)
    context: Context = request.app.state.context
    base = context.settings.base_url() + router.prefix
    read = (read_request_task(body, base=base) if resource_type == "Task"
            else read_procedure(body, base=base))
    if isinstance(read, list):
        return _invalid(read, context.settings.max_error_entries)
    expression = "Task.focus" if resource_type == "Task" else "Procedure.basedOn[0]"
    raw = await request.body()
    answer = await run_in_threadpool(_submit, context, principal, site_id, read, raw, expression,
                                     actor_for(principal, request))
    if isinstance(answer, Response):
        return answer
    return _created(request, answer)


@router.post("/Task", name="fhir_create_task", status_code=201, dependencies=[needs("system/Task.c")])
async def create_task(request: Request, principal: Principal = Depends(current_principal)) -> Response:
    """A site's request Task (cancel, hold, release, change): see the module."""
    return await _create(request, principal, "Task")


@router.post("/Procedure", name="fhir_create_procedure", status_code=201,
             dependencies=[needs("system/Procedure.c")])
async def create_procedure(request: Request, principal: Principal = Depends(current_principal)) -> Response:
    """A site's infusion done: see the module."""
    return await _create(request, principal, "Procedure")
