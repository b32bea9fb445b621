"""``cgt-gateway outbox list|show|retry|skip`` and ``cgt-gateway worker``, on the configured database.

``outbox`` commands print JSON (one object per message for ``list``); payloads (PHI) only with
``show --payload``.  ``worker`` runs a standalone delivery worker until SIGTERM/SIGINT; several may run
against one PostgreSQL database (a destination is held by one worker at a time).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

if TYPE_CHECKING:
    from sqlmodel import Session

__all__ = ["outbox_app", "worker_command"]

outbox_app = typer.Typer(help="Inspect, replay and skip outbox messages.", no_args_is_help=True)

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", "-c",
    help="YAML configuration file (default: $CGT_GATEWAY_CONFIG, else the demo configuration)")]
PayloadOption = Annotated[bool, typer.Option(help="Include the message itself (PHI)")]


def _settings(config: Path | None):  # type: ignore[no-untyped-def]
    from gateway.config import load_settings

    return load_settings(config)


_NOT_MIGRATED = ("error: the database {where} is not migrated (it has no outbox); "
                 "run `cgt-gateway migrate` (or `cgt-gateway serve`, which migrates) first")


def _missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite database file that does not exist (opening it would create it)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    if parsed.database.startswith("file:"):  # a URI filename: SQLite decides
        return None
    return None if Path(parsed.database).exists() else parsed.database


@contextmanager
def _session(config: Path | None) -> Iterator[Session]:
    """A session on the configured, migrated database; the engine is disposed of afterwards.

    A database without the outbox tables (never migrated) is refused with exit status 1, and a
    SQLite file that does not exist is not created."""
    import sqlalchemy as sa
    from sqlmodel import Session as SqlSession

    from gateway.delivery.outbox import OutboxMessage
    from gateway.store.db import make_engine

    url = _settings(config).database_url
    missing = _missing_sqlite_file(url)
    if missing is not None:
        typer.echo(_NOT_MIGRATED.format(where=repr(missing) + " does not exist, so it"), err=True)
        raise typer.Exit(1)
    engine = make_engine(url)
    try:
        if not sa.inspect(engine).has_table(OutboxMessage.__tablename__):
            where = engine.url.render_as_string(hide_password=True)
            typer.echo(_NOT_MIGRATED.format(where=repr(where)), err=True)
            raise typer.Exit(1)
        with SqlSession(engine) as session:
            yield session
    finally:
        engine.dispose()


def _echo(value: object) -> None:
    typer.echo(orjson.dumps(value).decode())


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {getattr(exc, 'detail', exc)}", err=True)
    return typer.Exit(1)


@outbox_app.command("list")
def outbox_list(config: ConfigOption = None,
                destination: Annotated[str | None, typer.Option(help="e.g. site-a/mllp")] = None,
                state: Annotated[str | None, typer.Option(help="pending, delivered, dead or skipped")] = None,
                after_id: Annotated[int | None, typer.Option(help="Only ids greater than this")] = None,
                limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100) -> None:
    """Messages in id (FIFO) order, one JSON object per line."""
    from gateway.delivery.outbox import MessageState, list_messages, message_view

    if state is not None and state not in {s.value for s in MessageState}:
        typer.echo(f"error: unknown state {state!r}", err=True)
        raise typer.Exit(2)
    with _session(config) as session:
        for message in list_messages(session, destination=destination, state=state, after_id=after_id,
                                     limit=limit):
            _echo(message_view(message))


@outbox_app.command("show")
def outbox_show(message_id: int, config: ConfigOption = None,
                payload: PayloadOption = False) -> None:
    """One message with every delivery attempt."""
    from gateway.delivery.outbox import attempts_for, get_message, message_view
    from gateway.errors import GatewayError

    with _session(config) as session:
        try:
            message = get_message(session, message_id)
        except GatewayError as exc:
            raise _fail(exc) from None
        _echo(message_view(message, attempts_for(session, message_id), with_payload=payload))


@outbox_app.command("retry")
def outbox_retry(message_id: int, config: ConfigOption = None) -> None:
    """Replay a dead-lettered or skipped message: same control id, same place in its queue."""
    from gateway.context import utc_now
    from gateway.delivery.outbox import message_view, replay
    from gateway.errors import GatewayError

    with _session(config) as session:
        try:
            _echo(message_view(replay(session, message_id, now=utc_now())))
        except GatewayError as exc:
            raise _fail(exc) from None


@outbox_app.command("skip")
def outbox_skip(message_id: int,
                reason: Annotated[str, typer.Option(help="Why it must not be delivered (recorded)")],
                config: ConfigOption = None) -> None:
    """Take a pending or dead message out of its queue for good, recording the reason."""
    from gateway.context import utc_now
    from gateway.delivery.outbox import message_view, skip
    from gateway.errors import GatewayError

    with _session(config) as session:
        try:
            _echo(message_view(skip(session, message_id, reason=reason, now=utc_now())))
        except GatewayError as exc:
            raise _fail(exc) from None


def _seconds(minimum: float, help_text: str) -> Any:
    return typer.Option(min=minimum, help=help_text)


def worker_command(config: ConfigOption = None,
                   lease_seconds: Annotated[float, _seconds(0.5, "Destination lease (s)")] = 30.0,
                   poll_interval: Annotated[float, _seconds(0.001, "Seconds between polls")] = 0.2,
                   retry_initial: Annotated[float, _seconds(0.0, "First backoff (s)")] = 1.0,
                   retry_max: Annotated[float, _seconds(0.0, "Backoff cap (s)")] = 300.0,
                   retry_jitter: Annotated[float, _seconds(0.0, "Random extra backoff (s)")] = 1.0) -> None:
    """Run a standalone delivery worker until SIGTERM or SIGINT."""
    from adapters.retry import RetryPolicy
    from gateway.cli.serve_processes import engine_for
    from gateway.delivery.senders import DeliveryConfigError, build_delivery_worker
    from gateway.delivery.worker import WorkerSettings
    from gateway.logging_config import configure_logging

    settings = _settings(config)
    configure_logging(settings.log_level)
    worker_settings = WorkerSettings(lease_seconds=lease_seconds, poll_interval_s=poll_interval,
                                     retry=RetryPolicy(initial_s=retry_initial, max_delay_s=retry_max,
                                                       jitter_s=retry_jitter),
                                     db_error_pause_s=max(poll_interval, 0.05))
    try:
        worker_engine = engine_for(settings)  # its pool: database_pool_size, database_max_overflow
        worker = build_delivery_worker(settings, worker_engine, worker_settings=worker_settings)
    except DeliveryConfigError as exc:
        raise _fail(exc) from None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        from gateway.subscriptions.heartbeat import HeartbeatScheduler  # issue 16: subscription heartbeats

        tasks = [worker.run(stop), HeartbeatScheduler(worker.engine, settings).run(stop)]
        if settings.alerts_enabled:
            from gateway.alerts.scheduler import AlertScheduler  # issue 16: milestone alerts
            from gateway.context import build_context

            tasks.append(AlertScheduler(build_context(settings, worker_engine)).run(stop))
        await asyncio.gather(*tasks)

    asyncio.run(main())


if __name__ == "__main__":  # ``python -m gateway.cli.outbox worker|outbox ...`` (also used by tests)
    _main = typer.Typer(no_args_is_help=True)
    _main.add_typer(outbox_app, name="outbox")
    _main.command("worker")(worker_command)
    _main()
