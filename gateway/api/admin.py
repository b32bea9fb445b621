"""Admin views: ``GET /v1/admin/safety-log`` (refused Chain-of-Identity attempts, newest first)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sqlmodel import select

from gateway.api.problem import problem_responses
from gateway.api.views import iso
from gateway.auth import Principal, current_principal, needs, require_admin
from gateway.store.db import read_session
from gateway.store.tables import SafetyLogRow

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=problem_responses(400, 401, 403, 422),
                   dependencies=[needs("admin")])


@router.get("/safety-log", summary="Refused Chain-of-Identity attempts (admin only)")
def safety_log(
    request: Request,
    principal: Annotated[Principal, Depends(current_principal)],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,  # the id column is a 32-bit integer
) -> dict[str, Any]:
    require_admin(principal)
    with read_session(request.app.state.context.engine) as session:
        query = select(SafetyLogRow)
        if before_id is not None:
            query = query.where(SafetyLogRow.id < before_id)  # type: ignore[operator]
        rows = session.exec(query.order_by(SafetyLogRow.id.desc()).limit(limit)).all()  # type: ignore[union-attr]
    return {
        "items": [
            {
                "id": r.id,
                "at": iso(r.at),
                "code": r.code,
                "manufacturer_id": r.manufacturer_id,
                "order_id": r.order_id,
                "event_id": r.event_id,
                "expected_coi": r.expected_coi,
                "presented_coi": r.presented_coi,
                "detail": r.detail,
            }
            for r in rows
        ]
    }
