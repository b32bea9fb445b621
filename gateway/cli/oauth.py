"""``cgt-gateway client register|list|revoke`` (SMART Backend Services clients) and
``cgt-gateway token revoke NAME`` (static tokens made with ``token create --name NAME``).

``client register`` prints ``client_id: <id>`` on its first line; the id goes into the client's
assertions as ``iss`` and ``sub``.  Each command migrates the configured database first, as
``token create`` does.  Exit status: 0 done, 1 nothing of that name, 2 invalid input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["client_app", "token_revoke"]

client_app = typer.Typer(help="SMART Backend Services clients: register, list, revoke.", no_args_is_help=True)

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", "-c",
    help="YAML configuration file (default: $CGT_GATEWAY_CONFIG, else the demo configuration)")]


def _open(config: Path | None) -> tuple[Any, Any]:
    """(settings, migrated engine), or exit 2 saying why the configuration is invalid."""
    from pydantic import ValidationError

    from gateway.config import load_settings
    from gateway.store.db import make_engine, migrate

    try:
        settings = load_settings(config)
    except (ValidationError, OSError, ValueError) as exc:
        typer.echo(f"invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from None
    engine = make_engine(settings.database_url)
    migrate(engine)
    return settings, engine


@client_app.command("register")
def client_register(
    role: Annotated[str, typer.Option(help="manufacturer:<id>, site:<id> or admin")],
    jwks: Annotated[Path, typer.Option(help="The client's public keys: a JWKS file ({\"keys\": [...]})")],
    scopes: Annotated[str, typer.Option(help='The scopes it may request, e.g. "system/Task.rs orders.read"')],
    config: ConfigOption = None,
) -> None:
    """Register a client with ROLE, its public JWKS and the scopes it may request; print its id."""
    from gateway.context import utc_now
    from gateway.oauth.clients import register_client
    from gateway.oauth.discovery import smart_configuration

    settings, engine = _open(config)
    try:
        with jwks.open("rb") as handle:
            text = handle.read(settings.oauth_max_jwks_bytes + 1)
        client = register_client(engine, settings, role=role, jwks_text=text, scopes=scopes, now=utc_now())
    except OSError as exc:
        typer.echo(f"error: cannot read {jwks}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    typer.echo(f"client_id: {client.client_id}")
    typer.echo(f"role: {client.role}")
    typer.echo(f"scopes: {' '.join(client.scopes)}")
    typer.echo("keys: " + ", ".join(f"{k.kid or '(no kid)'} {k.alg}" for k in client.keys))
    typer.echo(f"token endpoint: {smart_configuration(settings.base_url())['token_endpoint']}")


@client_app.command("list")
def client_list(config: ConfigOption = None) -> None:
    """Every client, configured and registered: id, role, source, status and scopes (tab-separated)."""
    from gateway.oauth.clients import list_clients

    settings, engine = _open(config)
    try:
        clients = list_clients(engine, settings)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    typer.echo("client_id\trole\tsource\tstatus\tscopes")
    for client in clients:
        status = "active" if client.revoked_at is None else f"revoked {client.revoked_at.isoformat()}"
        typer.echo(f"{client.client_id}\t{client.role}\t{client.source}\t{status}\t{' '.join(client.scopes)}")


@client_app.command("revoke")
def client_revoke(client_id: Annotated[str, typer.Argument(help="The client id")],
                  config: ConfigOption = None) -> None:
    """Revoke a registered client: its access tokens stop working at once, its assertions are refused."""
    from gateway.context import utc_now
    from gateway.oauth.clients import revoke_client

    settings, engine = _open(config)
    try:
        changed = revoke_client(engine, settings, client_id, utc_now())
    except LookupError as exc:
        typer.echo(f"error: {exc.args[0]}", err=True)
        raise typer.Exit(1) from None
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    typer.echo(f"revoked client {client_id}" if changed else f"client {client_id} was already revoked")


def token_revoke(name: Annotated[str, typer.Argument(help="The --name given to token create")],
                 config: ConfigOption = None) -> None:
    """Revoke the static tokens made with `token create --name NAME` (they get 401 at once)."""
    from gateway.context import utc_now
    from gateway.oauth.clients import revoke_static_token

    _settings, engine = _open(config)
    try:
        count = revoke_static_token(engine, name, utc_now())
    finally:
        engine.dispose()
    if count == 0:
        typer.echo(f"error: no unrevoked token named {name!r} (tokens of the configuration file are "
                   "revoked by removing them from api_clients)", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {count} token{'s' if count != 1 else ''} named {name}")
