"""The app factory: wires settings, database, site profiles, terminology and the routers."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from gateway import fhir_api
from gateway.api import admin, alerts, health, orders, retraction, site_requests
from gateway.api import outbox as outbox_api
from gateway.api import preview as preview_api
from gateway.api.limits import BodyLimitMiddleware
from gateway.api.openapi import install_openapi
from gateway.api.problem import install_problem_handlers
from gateway.audit import AuditTrail
from gateway.config import Settings, load_settings
from gateway.console.routes import install_console
from gateway.context import Clock, build_context, utc_now
from gateway.fhir_api import audit_events
from gateway.fhir_api import inbound as fhir_inbound
from gateway.inbound.mllp import inbound_lifespan
from gateway.metrics import GatewayMetrics, MetricsMiddleware
from gateway.oauth.routes import install as install_oauth
from gateway.store.db import make_engine
from gateway.subscriptions import notify as subscription_trigger
from gateway.subscriptions import routes as subscription_routes

__all__ = ["create_app", "Service"]

#: A background service run by the app's lifespan: started after the listeners, it returns its stop
#: function (None: nothing to stop), called at shutdown before the listeners close.
Service = Callable[[FastAPI], "Callable[[], None] | None"]


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the audit trail's thread (read batches, head digest log) and, under ``serve``
    (``app.state.listen``), the sites' inbound MLLP listeners; at shutdown stop the listeners first,
    then append the reads still waiting and log the chain head.  ``app.state.services`` (``serve
    --processes N``: each process's delivery worker, heartbeats and alert scheduler) run between."""
    app.state.audit.start()
    try:
        if app.state.listen:
            async with inbound_lifespan(app), _services(app):
                yield
        else:
            async with _services(app):
                yield
    finally:
        await run_in_threadpool(app.state.audit.close)


@asynccontextmanager
async def _services(app: FastAPI) -> AsyncIterator[None]:
    """Start ``app.state.services`` in order; stop those started in the reverse order."""
    stops: list[Callable[[], None]] = []
    try:
        for service in app.state.services:
            stop = await run_in_threadpool(service, app)
            if stop is not None:
                stops.append(stop)
        yield
    finally:
        for stop in reversed(stops):
            await run_in_threadpool(stop)


class _ProcessHeader:
    """TEST ONLY (``serve_process_header``): ``X-Cgt-Process: <process id>`` on every response."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.value = str(os.getpid()).encode("ascii")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"x-cgt-process", self.value)]
            await send(message)

        await self.app(scope, receive, send_with_header)


def create_app(settings: Settings | None = None, *, engine: Engine | None = None,
               now: Clock = utc_now, listen: bool = False, reuse_port: bool = False,
               services: Sequence[Service] = ()) -> FastAPI:
    """A ready app. The database must already be migrated (``cgt-gateway serve`` does it first).
    ``listen``: the app's lifespan runs the sites' inbound MLLP listeners (``serve`` sets it), bound
    with SO_REUSEPORT if ``reuse_port`` (``serve --processes N``); ``services``: background services
    its lifespan starts and stops (see :data:`Service`)."""
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
    app.state.listen = listen
    app.state.reuse_port = reuse_port
    app.state.services = tuple(services)
    app.state.context = build_context(settings, engine, now=now)
    app.state.metrics = GatewayMetrics(engine, clock=now)
    app.state.audit = AuditTrail(engine, enabled=settings.audit_enabled, flush_s=settings.audit_read_flush_s,
                                 max_pending=settings.audit_read_max_pending,
                                 head_log_s=settings.audit_head_log_s, clock=now)
    install_problem_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)  # outermost: times every request
    if settings.serve_process_header:  # TEST ONLY (issue 17): which process answered
        app.add_middleware(_ProcessHeader)
    # Routes are matched in order, one by one: the two hot paths, the event ingest (4 routes) and
    # the FHIR poll, come first (no path of one router overlaps another's, so the order changes
    # nothing else).
    app.include_router(orders.router)
    app.include_router(retraction.router)
    app.include_router(site_requests.router)
    install_oauth(app)  # POST /oauth/token, smart-configuration (also under /fhir: before the FHIR router)
    app.include_router(fhir_inbound.router)  # POST /fhir/Task and /Procedure, before the read-only catch-all
    app.include_router(audit_events.router)  # /fhir/AuditEvent, before /fhir/{resource_type}
    app.include_router(subscription_routes.router)  # issue 16: Subscription, topics (before the catch-all)
    subscription_trigger.install(engine, settings)  # issue 16: stored Task/Flag versions -> notifications
    app.include_router(fhir_api.router)
    app.include_router(health.router)
    app.include_router(admin.router)
    app.include_router(alerts.router)  # issue 16: /v1/alerts, /v1/certifications, /v1/admin/certifications
    app.include_router(preview_api.router)
    app.include_router(outbox_api.router)
    app.include_router(outbox_api.metrics_router)
    install_console(app)
    install_openapi(app)  # per-event-type data schemas, OperationOutcome under /fhir, clean descriptions
    return app
