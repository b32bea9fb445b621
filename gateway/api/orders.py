"""The manufacturer API: ``POST/GET /v1/orders`` and ``POST /v1/orders/{order_id}/events``.

A manufacturer token sees and touches only its own orders (another's order is 404); site tokens
read their site's orders; admin reads all; only manufacturer tokens write (403 otherwise).

The two writes run through :func:`gateway.store.db.run_write` (on SQLite: the engine's one writer thread;
the reads stay in the thread pool and never queue behind them).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, TypeAdapter, ValidationError
from sqlmodel import select

from gateway.api.problem import problem_responses
from gateway.api.views import event_view, list_orders, order_summary, order_view
from gateway.audit import Actor
from gateway.audit.patients import order_reference, patient_reference
from gateway.auth import Principal, current_principal, needs, require_manufacturer
from gateway.context import Context
from gateway.errors import Conflict, FieldError, Forbidden, NotFound
from gateway.fhir_api.audit_events import actor_for, note_read
from gateway.intake.events import accept_event
from gateway.intake.orders import accept_order
from gateway.store.db import read_session, run_write
from gateway.store.tables import OrderRow
from mappings.domain import OrderStatus
from mappings.events import EventIn
from mappings.orders import Identifier, OrderIn
from mappings.strict_types import DATETIME_FORM, Instant

__all__ = ["router", "request_context", "manufacturer_of", "order_id_or_404"]

router = APIRouter(
    prefix="/v1", tags=["orders"], responses=problem_responses(400, 401, 403, 404, 409, 413, 415, 422)
)

PrincipalDep = Annotated[Principal, Depends(current_principal)]
IdQuery = Query(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")
_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)


def _in_utc_range(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"is out of range once converted to UTC; send {DATETIME_FORM}") from None


def order_id_or_404(order_id: str) -> str:
    """An ``order_id`` no order can have (``%00``, a slash, 65 characters) names no order: 404."""
    try:
        return _IDENTIFIER.validate_python(order_id)
    except ValidationError:
        raise NotFound(f"No order {order_id[:64]!r}.") from None


def request_context(request: Request) -> Context:
    return request.app.state.context  # type: ignore[no-any-return]


async def manufacturer_of(principal: PrincipalDep) -> str:
    """Async: a pure check, so FastAPI runs it on the event loop instead of a thread-pool hop."""
    return require_manufacturer(principal)


ManufacturerDep = Annotated[str, Depends(manufacturer_of)]


@router.post("/orders", status_code=201, summary="Place an order (idempotent by order_id)",
             dependencies=[needs("orders.write")],
             responses={200: {"description": "An identical repeat: the order as first accepted"}})
async def post_order(order: OrderIn, request: Request, manufacturer_id: ManufacturerDep,
                     principal: PrincipalDep) -> JSONResponse:
    context = request_context(request)
    actor = actor_for(principal, request)
    return await run_write(context.engine, _place_order, context, manufacturer_id, order, actor)


def _place_order(context: Context, manufacturer_id: str, order: OrderIn, actor: Actor) -> JSONResponse:
    accepted = accept_order(context, manufacturer_id, order, actor)
    with read_session(context.engine) as session:
        row = session.get(OrderRow, accepted.order_pk)
        assert row is not None
        body = order_view(session, row)
    headers = {"Location": f"/v1/orders/{row.order_id}"}
    return JSONResponse(body, status_code=201 if accepted.created else 200, headers=headers)


@router.post(
    "/orders/{order_id}/events", status_code=201, summary="Post a status event (idempotent by event_id)",
    dependencies=[needs("orders.write")],
    responses={200: {"description": "An identical repeat: the event as first accepted"}},
)
async def post_event(
    order_id: str, event: EventIn, request: Request, manufacturer_id: ManufacturerDep, principal: PrincipalDep
) -> JSONResponse:
    context = request_context(request)
    actor = actor_for(principal, request)
    return await run_write(context.engine, _append_event, context, manufacturer_id, order_id, event, actor)


def _append_event(context: Context, manufacturer_id: str, order_id: str, event: EventIn,
                  actor: Actor) -> JSONResponse:
    accepted = accept_event(context, manufacturer_id, order_id_or_404(order_id), event, actor)
    return JSONResponse(event_view(accepted.row, order_id), status_code=201 if accepted.created else 200)


def _visible(principal: Principal, manufacturer_id: str | None) -> tuple[str | None, str | None]:
    """(manufacturer filter, site filter) this principal is limited to."""
    if principal.role == "manufacturer":
        return principal.subject, None
    if principal.role == "site":
        return manufacturer_id, principal.subject
    return manufacturer_id, None


@router.get("/orders/{order_id}", summary="An order: state, timeline and the FHIR resources it produced",
            dependencies=[needs("orders.read")])
def get_order(
    order_id: str,
    request: Request,
    principal: PrincipalDep,
    manufacturer_id: Annotated[str | None, IdQuery] = None,
) -> dict[str, Any]:
    only_manufacturer, only_site = _visible(principal, manufacturer_id)
    order_id = order_id_or_404(order_id)
    with read_session(request_context(request).engine) as session:
        query = select(OrderRow).where(OrderRow.order_id == order_id)
        if only_manufacturer is not None:
            query = query.where(OrderRow.manufacturer_id == only_manufacturer)
        if only_site is not None:
            query = query.where(OrderRow.site_id == only_site)
        rows = session.exec(query.limit(2)).all()
        if not rows:
            raise NotFound(f"No order {order_id}.")
        if len(rows) > 1:
            raise Conflict(
                "Several manufacturers use this order_id; pass manufacturer_id.",
                code="ambiguous-order-id",
                errors=[FieldError("/query/manufacturer_id", "required for this order_id")],
            )
        view = order_view(session, rows[0])
    context = request_context(request)
    entities = [order_reference(rows[0].manufacturer_id, order_id)]
    note_read(request, principal, "orders.read", entities=entities, patients=_patients(context, rows))
    return _as_site_may_see(view, principal, context)


def _patients(context: Context, rows: Sequence[OrderRow]) -> list[str]:
    """``Patient/<id>`` of each order's patient (for the audit record; the MRN goes no further)."""
    found = (patient_reference(context.profiles, r.manufacturer_id, r.site_id,
                               str((r.body.get("patient") or {}).get("mrn", ""))) for r in rows)
    return [p for p in found if p]


def _as_site_may_see(view: dict[str, Any], principal: Principal, context: Context) -> dict[str, Any]:
    """A site whose profile takes only the MRN is not shown the manufacturer's demographics here either."""
    if principal.role != "site":
        return view
    profile = context.profiles.get(principal.subject or "")
    if profile is not None and profile.patient.demographics == "full":
        return view
    order = dict(view["order"])
    order["patient"] = {"mrn": order["patient"]["mrn"]}
    return {**view, "order": order}


@router.get("/orders", summary="Orders, oldest change first, keyset-paged",
            dependencies=[needs("orders.read")])
def get_orders(
    request: Request,
    principal: PrincipalDep,
    site_id: Annotated[str | None, IdQuery] = None,
    status: OrderStatus | None = None,
    updated_since: Annotated[Instant, AfterValidator(_in_utc_range)] | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    manufacturer_id: Annotated[str | None, IdQuery] = None,
) -> dict[str, Any]:
    only_manufacturer, only_site = _visible(principal, manufacturer_id)
    if only_site is not None and site_id is not None and site_id != only_site:
        raise Forbidden("A site token reads only its own site's orders.")
    with read_session(request_context(request).engine) as session:
        rows, next_cursor = list_orders(
            session,
            manufacturer_id=only_manufacturer,
            site_id=only_site or site_id,
            status=status.value if status else None,
            updated_since=updated_since,
            limit=limit,
            cursor=cursor,
        )
    if rows:  # an empty page shows no patient data: no record
        note_read(request, principal, "orders.search", action="search",
                  entities=[order_reference(r.manufacturer_id, r.order_id) for r in rows],
                  patients=_patients(request_context(request), rows))
    return {"items": [order_summary(r) for r in rows], "next_cursor": next_cursor}
