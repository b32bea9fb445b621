"""``cgt-gateway``: ``serve``, ``listen``, ``migrate``, ``token create``, ``profile ...``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.audit import audit_app
from gateway.cli.demo_peer import demo_peer_command, start_demo_peer_thread
from gateway.cli.listen import listen_command
from gateway.cli.oauth import client_app, token_revoke
from gateway.cli.outbox import outbox_app, worker_command
from gateway.cli.profile import profile_app

__all__ = ["app"]

app = typer.Typer(help="cgt-gateway: CGT orders and events in; FHIR R4 and HL7v2 out.", no_args_is_help=True)
token_app = typer.Typer(help="Create API tokens (only their hash is stored).", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(profile_app, name="profile")
app.add_typer(outbox_app, name="outbox")
app.add_typer(audit_app, name="audit")
app.command("worker")(worker_command)
app.add_typer(client_app, name="client")  # issue 14: SMART Backend Services clients
token_app.command("revoke")(token_revoke)
app.command("listen")(listen_command)
app.command("demo-peer")(demo_peer_command)  # issue 15: the demo site engine (MLLP sink)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML configuration file (default: $CGT_GATEWAY_CONFIG, else the demo configuration)",
    ),
]


def _settings(config: Path | None, **overrides: object):  # type: ignore[no-untyped-def]
    """The settings, or exit 2 printing why the configuration is invalid."""
    from pydantic import ValidationError

    from gateway.config import load_settings

    try:
        return load_settings(config, **{k: v for k, v in overrides.items() if v is not None})
    except (ValidationError, OSError, ValueError) as exc:
        typer.echo(f"invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default 8080)")] = None,
    worker: Annotated[bool | None, typer.Option(
        "--worker/--no-worker",
        help="Run the delivery worker in each server process (default on: serve_delivery_worker)")] = None,
    with_demo_peer: Annotated[bool, typer.Option(
        "--with-demo-peer", help="Also run the demo site engine (demo-peer) on 127.0.0.1")] = False,
    processes: Annotated[int | None, typer.Option(
        "--processes", help="Server processes on the one port (default 1: serve_processes); more than "
                            "1 needs PostgreSQL")] = None,
) -> None:
    """Migrate the database, load every site profile, and serve the API (with a delivery worker)."""
    from gateway.cli.serve_processes import engine_for, process_services, refusal

    if processes is not None and processes < 1:
        typer.echo(f"cannot serve: --processes must be at least 1, not {processes}", err=True)
        raise typer.Exit(2)
    overrides = {"host": host, "port": port, "serve_delivery_worker": worker, "serve_processes": processes}
    settings = _settings(config, **overrides)
    problem = refusal(settings, settings.serve_processes)
    if problem is not None:  # before anything starts (no migration, no socket)
        typer.echo(f"cannot serve: {problem}", err=True)
        raise typer.Exit(2)
    if settings.serve_processes > 1:
        _serve_processes(settings, overrides, with_demo_peer)
        return
    import uvicorn

    from gateway.bootstrap import create_app
    from gateway.cli.http_server import uvicorn_options
    from gateway.logging_config import configure_logging
    from gateway.store.db import migrate

    engine = engine_for(settings)
    migrate(engine)
    try:  # + the sites' MLLP listeners; the worker, heartbeats and alert scheduler run in its lifespan,
        # so a SIGTERM (uvicorn's graceful shutdown) stops them and gives the worker's leases back
        application = create_app(settings, engine=engine, listen=True, services=process_services(settings))
    except ValueError as exc:  # ProfileInvalid lists every problem as file:line: field: reason
        typer.echo(f"cannot start: {exc}", err=True)
        raise typer.Exit(1) from None
    if settings.serve_delivery_worker:
        _check_delivery(settings, engine, application)
    configure_logging(settings.log_level)
    demo_peer = start_demo_peer_thread(settings) if with_demo_peer else None
    try:
        uvicorn.run(
            application,
            host=settings.host,
            port=settings.port,
            log_config=None,
            log_level=settings.log_level.lower(),
            **uvicorn_options(settings),  # loop, HTTP parser with read deadlines, concurrency limit
        )
    finally:
        if demo_peer is not None:
            demo_peer.stop()


def _serve_processes(settings, overrides, with_demo_peer: bool) -> None:  # type: ignore[no-untyped-def]
    """``serve --processes N`` (N > 1, PostgreSQL): migrate and validate once here, then run the
    children (:mod:`gateway.cli.serve_processes`); the demo peer stays in this process."""
    from gateway.bootstrap import create_app
    from gateway.cli.serve_processes import (
        apply_environment,
        child_environment,
        engine_for,
        metrics_directory,
        mllp_bind_problem,
        run_processes,
    )
    from gateway.logging_config import configure_logging
    from gateway.store.db import migrate

    engine = engine_for(settings)
    try:
        migrate(engine)
        try:  # the checks each child would make, once, before any starts
            application = create_app(settings, engine=engine)
        except ValueError as exc:  # ProfileInvalid lists every problem as file:line: field: reason
            typer.echo(f"cannot start: {exc}", err=True)
            raise typer.Exit(1) from None
        if settings.serve_delivery_worker:
            _check_delivery(settings, engine, application)
        problem = mllp_bind_problem(application) if settings.inbound_mllp_enabled else None
        if problem is not None:
            typer.echo(f"cannot start: {problem}", err=True)
            raise typer.Exit(1)
    finally:
        engine.dispose()  # the children open their own connections
    configure_logging(settings.log_level)
    demo_peer = start_demo_peer_thread(settings) if with_demo_peer else None
    try:
        with metrics_directory() as metrics_env:  # /metrics sums the counts of every process
            apply_environment({**child_environment(settings, overrides), **metrics_env})
            status = run_processes(settings, settings.serve_processes)
    finally:
        if demo_peer is not None:
            demo_peer.stop()
    if status:
        typer.echo("cannot start: a server process failed to start (its log says why)", err=True)
        raise typer.Exit(status)


def _check_delivery(settings, engine, application) -> None:  # type: ignore[no-untyped-def]
    """Build the delivery worker once, so that a bad delivery configuration stops ``serve`` before it
    listens (exit 1, naming the problem) rather than in the app's lifespan."""
    from gateway.delivery.senders import DeliveryConfigError, build_delivery_worker

    try:
        build_delivery_worker(settings, engine, application.state.context.profiles)
    except DeliveryConfigError as exc:
        typer.echo(f"cannot start the delivery worker: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command()
def migrate(config: ConfigOption = None) -> None:
    """Upgrade the configured database to the newest schema."""
    from gateway.store.db import make_engine
    from gateway.store.db import migrate as run_migrations

    run_migrations(make_engine(_settings(config).database_url))
    typer.echo("database is at the newest migration")


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="manufacturer:<id>, site:<id> or admin")],
    name: Annotated[str | None, typer.Option(help="Who holds the token")] = None,
    config: ConfigOption = None,
) -> None:
    """Create a token for ROLE, print it once, and store only its SHA-256."""
    from gateway.auth import create_token
    from gateway.context import utc_now
    from gateway.store.db import make_engine
    from gateway.store.db import migrate as run_migrations

    settings = _settings(config)
    engine = make_engine(settings.database_url)
    run_migrations(engine)
    try:
        token = create_token(engine, settings, role=role, name=name or role, now=utc_now())
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(token)
    typer.echo("Store this token now: it is not shown again (only its hash is kept).", err=True)
