"""``POST /v1/orders/{order_id}/events/{event_id}/retract``: withdraw an event accepted in error.

The order's manufacturer only (site and admin tokens 403; another manufacturer's order 404, as on
every read).  ``200`` with the retracted event and the order's recomputed status, the first time and
on every repeat (a repeat changes nothing).  The write runs through :func:`gateway.store.db.run_write`
like the other writes; the rules are in :mod:`gateway.intake.retraction`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError

from gateway.api.orders import manufacturer_of, order_id_or_404, request_context
from gateway.api.problem import problem_responses
from gateway.api.views import event_view
from gateway.audit import Actor
from gateway.auth import Principal, current_principal, needs
from gateway.context import Context
from gateway.errors import NotFound
from gateway.fhir_api.audit_events import actor_for
from gateway.intake.retraction import RetractionIn, retract_event
from gateway.store.db import run_write
from mappings.orders import Identifier

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["orders"], dependencies=[needs("orders.write")],
                   responses=problem_responses(400, 401, 403, 404, 409, 413, 415, 422))

ManufacturerDep = Annotated[str, Depends(manufacturer_of)]
_EVENT_ID: TypeAdapter[str] = TypeAdapter(Identifier)


def _event_id_or_404(event_id: str) -> str:
    """An ``event_id`` no event can have (``%00``, 65 characters) names no event: 404."""
    try:
        return _EVENT_ID.validate_python(event_id)
    except ValidationError:
        raise NotFound(f"No event {event_id[:64]!r}.") from None


@router.post(
    "/orders/{order_id}/events/{event_id}/retract", status_code=200,
    summary="Retract an event accepted in error (idempotent: a repeat changes nothing)",
    responses={200: {"description": "The retracted event (retracted_at, retraction_reason) and the "
                                    "order's recomputed status and state"}},
)
async def post_retraction(order_id: str, event_id: str, body: RetractionIn, request: Request,
                          manufacturer_id: ManufacturerDep,
                          principal: Annotated[Principal, Depends(current_principal)]) -> JSONResponse:
    context = request_context(request)
    actor = actor_for(principal, request)
    return await run_write(context.engine, _retract, context, manufacturer_id, order_id, event_id, body,
                           actor)


def _retract(context: Context, manufacturer_id: str, order_id: str, event_id: str,
             body: RetractionIn, actor: Actor) -> JSONResponse:
    order_id = order_id_or_404(order_id)
    done = retract_event(context, manufacturer_id, order_id, _event_id_or_404(event_id), body.reason, actor)
    event = {k: v for k, v in event_view(done.row, order_id).items() if k not in ("order_id", "coi")}
    return JSONResponse({"order_id": order_id, "status": done.status, "state": done.state, "event": event})
