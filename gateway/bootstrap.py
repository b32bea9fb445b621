"""The app factory: wires settings, database, site profiles, terminology and the routers."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from gateway import fhir_api
from gateway.api import admin, health, orders, retraction, site_requests
from gateway.api import outbox as outbox_api
from gateway.api import preview as preview_api
from gateway.api.limits import BodyLimitMiddleware
from gateway.api.problem import install_problem_handlers
from gateway.config import Settings, load_settings
from gateway.context import Clock, build_context, utc_now
from gateway.fhir_api import inbound as fhir_inbound
from gateway.inbound.mllp import inbound_lifespan
from gateway.metrics import GatewayMetrics
from gateway.oauth.routes import install as install_oauth
from gateway.store.db import make_engine
from gateway.subscriptions import notify as subscription_trigger
from gateway.subscriptions import routes as subscription_routes

__all__ = ["create_app"]


def create_app(settings: Settings | None = None, *, engine: Engine | None = None,
               now: Clock = utc_now, listen: bool = False) -> FastAPI:
    """A ready app. The database must already be migrated (``cgt-gateway serve`` does it first).
    ``listen``: the app's lifespan runs the sites' inbound MLLP listeners (``serve`` sets it)."""
    settings = settings if settings is not None else load_settings()
    engine = engine if engine is not None else make_engine(settings.database_url)
    app = FastAPI(
        title="cgt-gateway",
        version="0.1.0",
        description="Cell and gene therapy orders and events in; FHIR R4 resources and HL7v2 messages out.",
        # no trailing-slash redirects: Starlette builds their Location from the request's Host header
        redirect_slashes=False,
        lifespan=inbound_lifespan if listen else None,
    )
    app.state.context = build_context(settings, engine, now=now)
    app.state.metrics = GatewayMetrics(engine, clock=now)
    install_problem_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    # Routes are matched in order, one by one: the two hot paths, the event ingest (4 routes) and
    # the FHIR poll, come first (no path of one router overlaps another's, so the order changes
    # nothing else).
    app.include_router(orders.router)
    app.include_router(retraction.router)
    app.include_router(site_requests.router)
    install_oauth(app)  # POST /oauth/token, smart-configuration (also under /fhir: before the FHIR router)
    app.include_router(fhir_inbound.router)  # POST /fhir/Task and /Procedure, before the read-only catch-all
    app.include_router(subscription_routes.router)  # issue 16: Subscription, topics (before the catch-all)
    subscription_trigger.install(engine, settings)  # issue 16: stored Task/Flag versions -> notifications
    app.include_router(fhir_api.router)
    app.include_router(health.router)
    app.include_router(admin.router)
    app.include_router(preview_api.router)
    app.include_router(outbox_api.router)
    app.include_router(outbox_api.metrics_router)
    return app
