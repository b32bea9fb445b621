"""The manufacturer's side of site requests (issue 13): ``GET /v1/site-requests``,
``GET /v1/site-requests/{request_id}`` and ``POST /v1/site-requests/{request_id}/decision``.

A manufacturer token sees and decides only the requests on its own orders (another's is 404); a site
token reads its own site's requests; admin reads all; only the order's manufacturer decides (403 for
other roles).  The list is keyset-paged in arrival order (``seq``) like ``GET /v1/orders``; a bad query
parameter is ``400 invalid-parameter`` naming it.  The rules of a decision are in
:func:`gateway.inbound.requests.decide_request_row`.  The raw message a site sent is never shown.
"""

from __future__ import annotations

import base64
import unicodedata
from typing import Annotated, Any, Literal

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field, field_validator

from gateway.api.orders import request_context
from gateway.api.problem import InvalidParameter, problem_responses
from gateway.audit import Actor
from gateway.auth import Principal, current_principal, needs, require_manufacturer
from gateway.context import Context
from gateway.errors import FieldError, Forbidden, NotFound
from gateway.fhir_api.audit_events import actor_for
from gateway.inbound import records
from gateway.inbound.requests import REASON_MAX_CHARS, decide_request_row
from gateway.store.db import run_write
from gateway.store.site_request_tables import SITE_REQUESTS as R
from mappings.domain import StrictModel
from mappings.site_request import SiteRequestState

__all__ = ["router", "DecisionIn"]

router = APIRouter(prefix="/v1", tags=["site requests"],
                   responses=problem_responses(400, 401, 403, 404, 409, 413, 415, 422))

PrincipalDep = Annotated[Principal, Depends(current_principal)]
IdQuery = Query(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")
_MAX_SEQ = 2**63 - 1


class DecisionIn(StrictModel):
    """Body of ``POST /v1/site-requests/{request_id}/decision``; a decline needs a reason (the site
    receives it)."""

    model_config = ConfigDict(strict=True)

    decision: Literal["accept", "decline"]
    reason: Annotated[str, Field(min_length=1, max_length=REASON_MAX_CHARS)] | None = None

    @field_validator("reason")
    @classmethod
    def _readable(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip():
            raise ValueError("must not be blank")
        if any(unicodedata.category(c) == "Cc" and c not in "\t\n\r" for c in value):
            raise ValueError("must not contain control characters (tab and line breaks are allowed)")
        if any(unicodedata.category(c) == "Cf" for c in value):
            raise ValueError("must not contain invisible formatting characters (bidi marks, zero-width)")
        return value


def _request_id_or_404(request_id: str) -> str:
    if not request_id.startswith("sr-") or len(request_id) > 40 or not request_id[3:].isalnum():
        raise NotFound(f"No site request {request_id[:64]!r}.")
    return request_id


def _visible(row: Any, principal: Principal) -> bool:
    if principal.role == "manufacturer":
        return bool(row.manufacturer_id == principal.subject)
    if principal.role == "site":
        return bool(row.site_id == principal.subject)
    return True


@router.post("/site-requests/{request_id}/decision", status_code=200, dependencies=[needs("orders.write")],
             summary="Accept or decline a site request awaiting the manufacturer (idempotent)",
             responses={200: {"description": "The request as decided (the same on a repeat)"}})
async def post_decision(request_id: str, body: DecisionIn, request: Request,
                        principal: PrincipalDep) -> JSONResponse:
    manufacturer_id = require_manufacturer(principal)
    context = request_context(request)
    return await run_write(context.engine, _decide, context, manufacturer_id, principal.client_id,
                           request_id, body, actor_for(principal, request))


def _decide(context: Context, manufacturer_id: str, client_id: str, request_id: str,
            body: DecisionIn, actor: Actor) -> JSONResponse:
    by = f"manufacturer:{manufacturer_id}" + (f" ({client_id})" if client_id else "")
    row = decide_request_row(context, manufacturer_id, _request_id_or_404(request_id), body.decision,
                             body.reason, by=by[:200], audit_actor=actor)
    return JSONResponse(records.api_view(row))


@router.get("/site-requests/{request_id}", summary="One site request", dependencies=[needs("orders.read")])
def get_site_request(request_id: str, request: Request, principal: PrincipalDep) -> dict[str, Any]:
    request_id = _request_id_or_404(request_id)
    with request_context(request).engine.connect() as conn:
        row = records.find(conn, request_id)
    if row is None or not _visible(row, principal):
        raise NotFound(f"No site request {request_id}.")
    return records.api_view(row)


def _encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([seq])).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4))
        value = orjson.loads(raw)
        if not isinstance(value, list) or len(value) != 1 or type(value[0]) is not int:
            raise ValueError("not a cursor of ours")
        seq = value[0]
        if not 1 <= seq <= _MAX_SEQ:
            raise ValueError("not a cursor of ours")
        return seq
    except (ValueError, TypeError, orjson.JSONDecodeError, UnicodeEncodeError):
        raise InvalidParameter("The cursor is not one this API returned.",
                               errors=[FieldError("/query/cursor", "not a valid cursor")]) from None


@router.get("/site-requests", summary="Site requests, oldest first, keyset-paged",
            dependencies=[needs("orders.read")])
def get_site_requests(
    request: Request,
    principal: PrincipalDep,
    state: SiteRequestState | None = None,
    site_id: Annotated[str | None, IdQuery] = None,
    order_id: Annotated[str | None, IdQuery] = None,
    manufacturer_id: Annotated[str | None, IdQuery] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    query = sa.select(*records.COLUMNS)
    if principal.role == "manufacturer":
        query = query.where(R.c.manufacturer_id == principal.subject)
    elif manufacturer_id is not None:
        query = query.where(R.c.manufacturer_id == manufacturer_id)
    if principal.role == "site":
        if site_id is not None and site_id != principal.subject:
            raise Forbidden("A site token reads only its own site's requests.")
        site_id = principal.subject
    if site_id is not None:
        query = query.where(R.c.site_id == site_id)
    if order_id is not None:
        query = query.where(R.c.order_id == order_id)
    if state is not None:
        query = query.where(R.c.state == state)
    if cursor is not None:
        query = query.where(R.c.seq > _decode_cursor(cursor))
    query = query.order_by(R.c.seq).limit(limit + 1)
    with request_context(request).engine.connect() as conn:
        rows = conn.execute(query).all()
    next_cursor = _encode_cursor(int(rows[limit - 1].seq)) if len(rows) > limit else None
    return {"items": [records.api_view(row) for row in rows[:limit]], "next_cursor": next_cursor}
