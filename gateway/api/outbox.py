"""Admin routes over the outbox, and ``/metrics``.

``GET  /v1/admin/outbox``                 messages by destination and state (keyset paging by id)
``GET  /v1/admin/outbox/{id}``            one message with every attempt (``?payload=true`` adds the message)
``POST /v1/admin/outbox/{id}/retry``      replay a dead-lettered or skipped message (same control id)
``POST /v1/admin/outbox/{id}/skip``       skip a pending or dead message, with a recorded reason
``GET  /v1/admin/alerts``                 dead letters, ACK warnings, retries exceeded (newest first)
``GET  /metrics``                         Prometheus text format
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, select

from gateway.api.problem import problem_responses
from gateway.audit.patients import order_reference
from gateway.auth import Principal, current_principal, needs, require_admin
from gateway.delivery.outbox import (
    DeliveryAlert,
    MessageState,
    attempts_for,
    get_message,
    iso_utc,
    list_messages,
    message_view,
    replay,
    skip,
)
from gateway.fhir_api.audit_events import note_read
from gateway.metrics import GatewayMetrics

__all__ = ["router", "metrics_router"]

router = APIRouter(prefix="/v1/admin", tags=["admin: outbox"], dependencies=[needs("admin")],
                   responses=problem_responses(400, 401, 403, 422))
metrics_router = APIRouter(tags=["operations"])

AdminPrincipal = Annotated[Principal, Depends(current_principal)]
# Query values the database could not hold are refused as 422 naming the field: PostgreSQL text
# cannot contain NUL, and an id past BIGINT is no id (the path's ids are checked by get_message).
Destination = Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]*$")]
AfterId = Annotated[int | None, Query(ge=0, le=2**63 - 1)]


class SkipBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000, pattern=r"\S")  # not blank


def _engine(request: Request) -> Any:
    return request.app.state.context.engine


@router.get("/outbox", summary="Outbox messages by destination and state (admin only)")
def outbox_list(request: Request, principal: AdminPrincipal,
                destination: Destination = None,
                state: Annotated[MessageState | None, Query()] = None,
                after_id: AfterId = None,
                limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
    require_admin(principal)
    with Session(_engine(request)) as session:
        rows = list_messages(session, destination=destination, state=state, after_id=after_id, limit=limit)
        items = [message_view(m) for m in rows]
    next_after = items[-1]["id"] if len(items) == limit else None
    return {"items": items, "next_after_id": next_after}


@router.get("/outbox/{message_id}", summary="One outbox message with its attempts (admin only)",
            responses=problem_responses(404))
def outbox_show(request: Request, principal: AdminPrincipal, message_id: int,
                payload: bool = False) -> dict[str, Any]:
    require_admin(principal)
    with Session(_engine(request)) as session:
        message = get_message(session, message_id)
        view = message_view(message, attempts_for(session, message_id), with_payload=payload)
    if payload:  # the message itself holds patient data: an audit record (ids only)
        note_read(request, principal, "outbox.read", entities=[
            f"outbox:{message_id}", order_reference(message.manufacturer_id, message.order_id)])
    return view


@router.post("/outbox/{message_id}/retry", summary="Replay a dead-lettered or skipped message (admin only)",
             responses=problem_responses(404, 409))
def outbox_retry(request: Request, principal: AdminPrincipal, message_id: int) -> dict[str, Any]:
    require_admin(principal)
    now = request.app.state.context.now()
    with Session(_engine(request)) as session:
        return message_view(replay(session, message_id, now=now))


@router.post("/outbox/{message_id}/skip", summary="Skip a message with a recorded reason (admin only)",
             responses=problem_responses(404, 409))
def outbox_skip(request: Request, principal: AdminPrincipal, message_id: int,
                body: SkipBody) -> dict[str, Any]:
    require_admin(principal)
    now = request.app.state.context.now()
    with Session(_engine(request)) as session:
        return message_view(skip(session, message_id, reason=body.reason, now=now))


@router.get("/alerts", summary="Delivery alerts, newest first (admin only)")
def alerts(request: Request, principal: AdminPrincipal,
           limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
    require_admin(principal)
    with Session(_engine(request)) as session:
        rows = session.exec(select(DeliveryAlert).order_by(DeliveryAlert.id.desc()).limit(limit)).all()  # type: ignore[union-attr]
    return {"items": [{"id": a.id, "at": iso_utc(a.at), "destination": a.destination,
                       "message_id": a.message_id, "kind": a.kind, "detail": a.detail} for a in rows]}


@metrics_router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is None:  # the app did not set one up: read the outbox tables all the same
        metrics = request.app.state.metrics = GatewayMetrics(_engine(request), request.app.state.context.now)
    body = metrics.render()
    return Response(content=body, media_type="text/plain; version=0.0.4; charset=utf-8")
