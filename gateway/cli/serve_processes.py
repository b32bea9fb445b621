"""``cgt-gateway serve --processes N``: N server processes on one port, on one PostgreSQL database.

uvicorn's worker model: the parent binds the HTTP socket, and :class:`uvicorn.supervisors.Multiprocess`
spawns N children that accept on it (and restarts one that dies; SIGHUP replaces them one by one).
Each child builds its app with :func:`create_process_app` (an importable factory: a spawned child
starts a fresh interpreter) from the same settings, which reach it through the environment:
``CGT_GATEWAY_CONFIG`` (the configuration file's absolute path) and a ``CGT_GATEWAY_*`` variable for
each value the command line set (:func:`child_environment`).

Before any child starts, the parent:

* refuses what cannot work (:func:`refusal`): fewer than 1 process, or more than 1 on SQLite (one
  writer process: its write lock and single writer thread are per process);
* migrates the database once, and loads the configuration, every site profile and the delivery
  configuration once, so a bad profile fails fast (``file:line: field: reason``) with no child started;
* checks that each site's MLLP port can be bound (:func:`mllp_bind_problem`), naming site and address;
* draws the console session key if none is configured, so a console cookie signed by one process is
  valid in the others (several hosts must configure ``console_session_key``).

Each child then runs what a single ``serve`` process runs: the API, the audit trail thread, the sites'
inbound MLLP listeners (bound with SO_REUSEPORT: every process accepts on the site's port, the kernel
spreads the connections; a connection stays with one process, so a site's messages on it keep their
order), and as lifespan services the delivery worker (unless ``--no-worker``), the subscription
heartbeats and the alert scheduler.  The delivery workers of all processes (and hosts, and standalone
``cgt-gateway worker``\\s) share the destinations through the lease rows, and an enqueue in one
process wakes the others through PostgreSQL ``LISTEN/NOTIFY`` (:mod:`gateway.delivery.wakeup`).

SIGTERM or SIGINT to the parent: it sends SIGTERM to each child, which stops gracefully (requests in
flight answered, the worker's current sends recorded and its leases given back, the MLLP listeners
closed, the audit trail flushed), and waits for them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from gateway.config import Settings

__all__ = ["refusal", "child_environment", "metrics_directory", "apply_environment", "mllp_bind_problem",
           "create_process_app", "process_services", "run_processes", "engine_for"]

#: The factory each child imports (``uvicorn.Config(factory=True)``).
APP_FACTORY = "gateway.cli.serve_processes:create_process_app"


def refusal(settings: Settings, processes: int) -> str | None:
    """Why ``serve`` cannot run ``processes`` processes with ``settings`` (None: it can)."""
    if processes < 1:
        return f"--processes must be at least 1, not {processes}"
    if processes > 1 and not settings.database_url.startswith(("postgresql", "postgres")):
        where = settings.database_url.split("?", 1)[0]
        return (f"--processes {processes} needs PostgreSQL: the database {where} is SQLite, which has one "
                "writer process (its write lock and writer thread are per process); run one process, or "
                "use PostgreSQL")
    return None


def engine_for(settings: Settings) -> Engine:
    """The process's engine, its pool sized by ``database_pool_size`` / ``database_max_overflow``."""
    from gateway.store.db import make_engine

    if settings.database_url.startswith("sqlite"):
        return make_engine(settings.database_url)
    return make_engine(settings.database_url, pool_size=settings.database_pool_size,
                       max_overflow=settings.database_max_overflow)


def child_environment(settings: Settings, overrides: Mapping[str, object]) -> dict[str, str]:
    """The ``CGT_GATEWAY_*`` variables that make a child load ``settings``: the configuration file, the
    command line's ``overrides`` (field name -> value), and a console session key if none is set."""
    env = {"CGT_GATEWAY_CONFIG": str(settings.config.resolve())}
    for name, value in overrides.items():
        if value is not None:
            env[f"CGT_GATEWAY_{name.upper()}"] = (str(value).lower() if isinstance(value, bool)
                                                  else str(value))
    if not settings.console_session_key:  # one key for every process (drawn per process otherwise)
        env["CGT_GATEWAY_CONSOLE_SESSION_KEY"] = secrets.token_urlsafe(48)
    return env


@contextlib.contextmanager
def metrics_directory() -> Iterator[dict[str, str]]:
    """A fresh directory for prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``: each
    process writes its counts there and ``/metrics`` sums them), removed when the server stops."""
    directory = tempfile.mkdtemp(prefix="cgt-gateway-metrics-")
    try:
        yield {"PROMETHEUS_MULTIPROC_DIR": directory}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def mllp_bind_problem(application: FastAPI) -> str | None:
    """Whether each enabled site's MLLP address can be bound with SO_REUSEPORT (as the children will),
    tried and let go at once; the first problem, naming the site and address, or None."""
    from gateway.inbound.mllp import InboundListeners

    for site in InboundListeners(application.state.context, reuse_port=True).sites:
        host, port = site.listen.host, site.listen.port
        try:
            addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                           flags=socket.AI_PASSIVE)
            for family, kind, proto, _, address in addresses:
                with socket.socket(family, kind, proto) as probe:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                    if family == socket.AF_INET6:
                        probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    probe.bind(address)
        except OSError as exc:
            detail = exc.strerror or str(exc)
            return f"site {site.site_id!r}: cannot listen for HL7v2 (MLLP) on {host}:{port}: {detail}"
    return None


def _start_worker(app: FastAPI) -> Callable[[], None]:
    from gateway.delivery.senders import build_delivery_worker

    context = app.state.context
    return build_delivery_worker(context.settings, context.engine, context.profiles).run_in_thread()


def _start_heartbeats(app: FastAPI) -> Callable[[], None]:
    from gateway.subscriptions.heartbeat import HeartbeatScheduler

    context = app.state.context
    return HeartbeatScheduler(context.engine, context.settings).run_in_thread()


def _start_alerts(app: FastAPI) -> Callable[[], None] | None:
    from gateway.alerts.scheduler import AlertScheduler

    context = app.state.context
    return AlertScheduler(context).run_in_thread() if context.settings.alerts_enabled else None


def process_services(settings: Settings) -> list[Callable[[FastAPI], Any]]:
    """What each process runs besides the API, as the single-process ``serve`` does: the delivery
    worker and the heartbeats (unless ``serve_delivery_worker`` is off), the alert scheduler."""
    services: list[Callable[[FastAPI], Any]] = []
    if settings.serve_delivery_worker:
        services += [_start_worker, _start_heartbeats]
    services.append(_start_alerts)
    return services


def create_process_app() -> FastAPI:
    """The app of one child process (uvicorn calls it in the child): the settings from the environment
    the parent set, the database already migrated by the parent."""
    from gateway.bootstrap import create_app
    from gateway.config import load_settings
    from gateway.logging_config import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings, engine=engine_for(settings), listen=True, reuse_port=True,
                      services=process_services(settings))


def run_processes(settings: Settings, processes: int) -> int:
    """Serve with ``processes`` children until SIGTERM/SIGINT; the exit status (non-zero if a child
    could not start).  The caller has migrated, validated and set the children's environment."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from gateway.cli.http_server import uvicorn_options

    config = uvicorn.Config(APP_FACTORY, factory=True, workers=processes, host=settings.host,
                            port=settings.port, log_config=None, log_level=settings.log_level.lower(),
                            timeout_worker_healthcheck=settings.serve_process_healthcheck_s,
                            **uvicorn_options(settings))
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])  # exits 3 if the port is taken
    supervisor.run()
    failed = [p for p in supervisor.processes if p.exitcode == STARTUP_FAILURE]
    return 1 if failed else 0


def apply_environment(env: Mapping[str, str]) -> None:
    """Set the children's variables in this process's environment (a spawned child inherits it)."""
    os.environ.update(env)
