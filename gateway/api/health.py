"""``GET /healthz`` (the process answers) and ``GET /readyz`` (the database answers, at our schema).

Both are per process: behind a load balancer or an orchestrator each server process (or host) is
probed on its own.  ``/readyz`` answers 503 ``not-ready`` when the database cannot be reached, or when
its schema is behind the newest migration this code ships (``cgt-gateway migrate`` or ``serve`` not
run yet): a process should not take traffic then.  A revision this code does not know is a newer
release's (a rolling upgrade migrated first): the old processes stay ready until they are replaced.
"""

from __future__ import annotations

import functools

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine

from gateway.api.problem import PROBLEM_MEDIA_TYPE, problem_body

__all__ = ["router", "schema_problem"]

router = APIRouter(tags=["health"])


@functools.cache
def _code_revisions() -> tuple[frozenset[str], frozenset[str]]:
    """The head revisions, and all revisions, of the migrations shipped with this code (read once)."""
    from alembic.script import ScriptDirectory

    from gateway.store.db import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    return frozenset(script.get_heads()), frozenset(r.revision for r in script.walk_revisions())


def schema_problem(engine: Engine) -> str | None:
    """None if the database answers and is at this code's migration head; else why not (raises if the
    database cannot be reached)."""
    with engine.connect() as conn:
        try:
            current = frozenset(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
        except sa.exc.ProgrammingError:  # PostgreSQL: no such table
            return "The database is not migrated."
        except sa.exc.OperationalError as exc:  # SQLite: no such table (a lost connection is re-raised)
            if "no such table" not in str(exc):
                raise
            return "The database is not migrated."
    heads, known = _code_revisions()
    if not current:
        return "The database is not migrated."
    if current != heads and current <= known:
        return "The database schema is behind this release's newest migration."
    return None


def _not_ready(detail: str) -> JSONResponse:
    body = problem_body(code="not-ready", title="Not ready", status=503, detail=detail)
    return JSONResponse(body, status_code=503, media_type=PROBLEM_MEDIA_TYPE)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
def readyz(request: Request) -> dict[str, str] | JSONResponse:
    try:
        problem = schema_problem(request.app.state.context.engine)
    except Exception:  # any database failure means "not ready"
        return _not_ready("The database is not reachable.")
    if problem is not None:
        return _not_ready(problem)
    return {"status": "ready", "database": "ok"}
