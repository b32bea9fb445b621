"""``GET /healthz`` (the process answers) and ``GET /readyz`` (the database answers)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.api.problem import PROBLEM_MEDIA_TYPE, problem_body
from gateway.store.db import ping

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
def readyz(request: Request) -> dict[str, str] | JSONResponse:
    try:
        ping(request.app.state.context.engine)
    except Exception:  # any database failure means "not ready"
        body = problem_body(
            code="not-ready", title="Not ready", status=503, detail="The database is not reachable."
        )
        return JSONResponse(body, status_code=503, media_type=PROBLEM_MEDIA_TYPE)
    return {"status": "ready", "database": "ok"}
