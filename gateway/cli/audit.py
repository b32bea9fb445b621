"""``cgt-gateway audit verify`` and ``cgt-gateway audit export`` on the configured database.

``verify`` walks the hash chain (:mod:`gateway.audit.verify`): exit 0 and a one-line summary (records,
head sequence number and hash) when it is intact; exit 1 naming the first record changed, removed or
reordered.  ``--anchor SEQ:SHA256`` also checks a head logged earlier ("audit chain head" log lines).

``export --since TIME`` writes the records recorded at or after TIME (ISO 8601; no zone means UTC) as
FHIR R4 AuditEvent resources (IHE BALP shape), one JSON object per line, to stdout or ``--out FILE``.
Neither command writes to the database; a database that was never migrated is refused (exit 1).
"""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["audit_app"]

audit_app = typer.Typer(help="Check and export the tamper-evident audit trail.", no_args_is_help=True)

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", "-c",
    help="YAML configuration file (default: $CGT_GATEWAY_CONFIG, else the demo configuration)")]
_ANCHOR = re.compile(r"^([0-9]{1,19}):([0-9a-f]{64})$")


def _engine(config: Path | None) -> Any:
    """The configured database's engine, refusing (exit 1) one without the audit tables."""
    import sqlalchemy as sa
    from pydantic import ValidationError

    from gateway.config import load_settings
    from gateway.store.db import make_engine

    try:
        settings = load_settings(config)
    except (ValidationError, OSError, ValueError) as exc:
        typer.echo(f"invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from None
    url = settings.database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        typer.echo(f"error: the database {url} does not exist", err=True)
        raise typer.Exit(1)
    engine = make_engine(url)
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("audit_record"):
            engine.dispose()
            typer.echo("error: the database has no audit trail; run `cgt-gateway migrate` first", err=True)
            raise typer.Exit(1)
    return engine


@audit_app.command("verify")
def verify(
    config: ConfigOption = None,
    anchor: Annotated[str | None, typer.Option(
        help="SEQ:SHA256 of a chain head logged earlier, which must still be in the chain")] = None,
) -> None:
    """Walk the hash chain; exit 1 naming the first record changed, removed or reordered."""
    from gateway.audit.verify import verify_chain

    anchored: tuple[int, str] | None = None
    if anchor is not None:
        match = _ANCHOR.match(anchor.strip())
        if not match:
            typer.echo("error: --anchor takes SEQ:SHA256 (a sequence number, a colon, 64 hex digits)",
                       err=True)
            raise typer.Exit(2)
        anchored = (int(match.group(1)), match.group(2))
    engine = _engine(config)
    try:
        report = verify_chain(engine, anchor=anchored)
    finally:
        engine.dispose()
    if not report.ok:
        typer.echo(f"audit chain BROKEN: {report.problem} ({report.records} records before it verified)",
                   err=True)
        raise typer.Exit(1)
    typer.echo(f"audit chain intact: {report.records} records; head {report.head_seq} {report.head_sha256}")


def _since(text: str) -> int:
    from gateway.store.search_params import to_us

    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        typer.echo(f"error: --since must be an ISO 8601 time such as 2026-12-01T00:00:00Z, not {text[:64]!r}",
                   err=True)
        raise typer.Exit(2) from None
    return to_us(when if when.tzinfo is not None else when.replace(tzinfo=UTC))


@audit_app.command("export")
def export(
    since: Annotated[str, typer.Option(help="Records from this time on (ISO 8601; no zone: UTC)")],
    out: Annotated[Path | None, typer.Option(help="Write to this file (default: standard output)")] = None,
    config: ConfigOption = None,
) -> None:
    """Write the audit records since a time as FHIR AuditEvent NDJSON (IHE BALP shape)."""
    import orjson

    from gateway.audit.fhir import audit_event
    from gateway.audit.search import records_since

    since_us = _since(since)
    engine = _engine(config)
    count = 0
    handle = out.open("wb") if out is not None else sys.stdout.buffer
    try:
        for record in records_since(engine, since_us):
            event = audit_event(record.seq, record.entry, record.prev_sha256, record.sha256)
            handle.write(orjson.dumps(event))
            handle.write(b"\n")
            count += 1
    finally:
        if out is not None:
            handle.close()
        else:
            handle.flush()
        engine.dispose()
    typer.echo(f"exported {count} audit records", err=True)
