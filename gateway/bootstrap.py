"""The app factory: wires settings, database, site profiles, terminology and the routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from gateway import fhir_api
from gateway.api import admin, health, orders, retraction
from gateway.api import outbox as outbox_api
from gateway.api import preview as preview_api
from gateway.api.limits import BodyLimitMiddleware
from gateway.api.problem import install_problem_handlers
from gateway.audit import AuditTrail
from gateway.config import Settings, load_settings
from gateway.context import Clock, build_context, utc_now
from gateway.fhir_api import audit_events
from gateway.metrics import GatewayMetrics
from gateway.store.db import make_engine

__all__ = ["create_app"]


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the audit trail's thread (read batches, head digest log); at shutdown append the reads
    still waiting and log the chain head."""
    app.state.audit.start()
    try:
        yield
    finally:
        await run_in_threadpool(app.state.audit.close)


def create_app(settings: Settings | None = None, *, engine: Engine | None = None,
               now: Clock = utc_now) -> FastAPI:
    """A ready app. The database must already be migrated (``cgt-gateway serve`` does it first)."""
    settings = settings if settings is not None else load_settings()
    engine = engine if engine is not None else make_engine(settings.database_url)
    app = FastAPI(
        title="cgt-gateway",
        version="0.1.0",
        description="Cell and gene therapy orders and events in; FHIR R4 resources and HL7v2 messages out.",
        # no trailing-slash redirects: Starlette builds their Location from the request's Host header
        redirect_slashes=False,
        lifespan=_lifespan,
    )
    app.state.context = build_context(settings, engine, now=now)
    app.state.metrics = GatewayMetrics(engine, clock=now)
    app.state.audit = AuditTrail(engine, enabled=settings.audit_enabled, flush_s=settings.audit_read_flush_s,
                                 max_pending=settings.audit_read_max_pending,
                                 head_log_s=settings.audit_head_log_s, clock=now)
    install_problem_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    # Routes are matched in order, one by one: the two hot paths, the event ingest (4 routes) and
    # the FHIR poll, come first (no path of one router overlaps another's, so the order changes
    # nothing else).
    app.include_router(orders.router)
    app.include_router(retraction.router)
    app.include_router(audit_events.router)  # /fhir/AuditEvent, before /fhir/{resource_type}
    app.include_router(fhir_api.router)
    app.include_router(health.router)
    app.include_router(admin.router)
    app.include_router(preview_api.router)
    app.include_router(outbox_api.router)
    app.include_router(outbox_api.metrics_router)
    return app
