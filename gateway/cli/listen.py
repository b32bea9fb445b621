"""``cgt-gateway listen``: only the sites' inbound MLLP listeners, until SIGTERM or SIGINT.

``cgt-gateway serve`` runs the same listeners in its own event loop next to the HTTP API (the app's
lifespan, :func:`gateway.inbound.mllp.inbound_lifespan`); ``listen`` is for a deployment that keeps
the MLLP side in its own process.  It takes the same configuration (``--config``, the environment),
migrates the database as ``serve`` does, and exits 1 naming the site and address when a listener
cannot start (address in use, TLS files), 2 on an invalid configuration.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["listen_command"]

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", "-c",
    help="YAML configuration file (default: $CGT_GATEWAY_CONFIG, else the demo configuration)")]


def listen_command(config: ConfigOption = None) -> None:
    """Run the inbound HL7v2 (MLLP) listeners of every site whose profile has inbound.mllp."""
    from pydantic import ValidationError

    from gateway.config import load_settings
    from gateway.context import build_context
    from gateway.inbound.mllp import InboundListeners, ListenerStartError
    from gateway.logging_config import configure_logging
    from gateway.store.db import make_engine, migrate

    try:
        settings = load_settings(config)
    except (ValidationError, OSError, ValueError) as exc:
        typer.echo(f"invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from None
    engine = make_engine(settings.database_url)
    migrate(engine)
    try:
        context = build_context(settings, engine)
    except ValueError as exc:  # ProfileInvalid: file:line: field: reason
        typer.echo(f"cannot start: {exc}", err=True)
        raise typer.Exit(1) from None
    configure_logging(settings.log_level)
    from gateway.subscriptions.notify import install as install_subscriptions

    install_subscriptions(engine, settings)  # issue 16: site requests stored here notify subscriptions too
    listeners = InboundListeners(context)
    if not listeners.sites:
        typer.echo("cannot start: no site listens (no profile has an enabled inbound.mllp, or "
                   "inbound_mllp_enabled is false)", err=True)
        raise typer.Exit(1)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await listeners.start()
        try:
            for site_id, port in listeners.ports.items():
                typer.echo(f"listening for {site_id} on port {port}", err=True)
            await stop.wait()
        finally:
            await listeners.close()

    try:
        asyncio.run(main())
    except ListenerStartError as exc:
        typer.echo(f"cannot start: {exc}", err=True)
        raise typer.Exit(1) from None
