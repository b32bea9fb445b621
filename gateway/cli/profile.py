"""``cgt-gateway profile validate|preview`` (owned by the profile work)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mappings.profile.loader import ProfileInvalid, load_profile

__all__ = ["profile_app"]

profile_app = typer.Typer(help="Validate and preview site mapping profiles.", no_args_is_help=True)


@profile_app.callback()
def _profile_group() -> None:
    """Validate and preview site mapping profiles."""  # keeps `validate` a subcommand on its own


def _profile_files(path: Path) -> list[Path]:
    """A file as given; a directory as every ``*.yaml``/``*.yml`` directly inside it."""
    if path.is_dir():
        return sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
    return [path]


@profile_app.command("validate")
def validate(
    paths: Annotated[list[Path], typer.Argument(help="Profile YAML files (or directories of them).")],
    config: Annotated[
        Path | None, typer.Option("--config", help="Gateway configuration (for its limits).")
    ] = None,
) -> None:
    """Validate site profiles: print ``PATH: ok (version ...)`` or every problem, one a line.

    Problems read ``file:line: field.path: reason``.  Exits 1 if any profile is invalid.  The
    ``profile_*`` and ``template_*`` limits of the configuration apply, as at start-up.
    """
    from gateway.config import load_settings
    from gateway.profile_limits import profile_limits

    limits = profile_limits(load_settings(config))
    invalid = 0
    checked = 0
    for given in paths:
        for path in _profile_files(given):
            checked += 1
            try:
                profile = load_profile(path, limits)
            except ProfileInvalid as exc:
                invalid += 1
                for problem in exc.problems:
                    typer.echo(problem, err=True)
                continue
            typer.echo(f"{path}: ok (version {profile.version})")
    if checked == 0:
        typer.echo("no profile files found", err=True)
        raise typer.Exit(1)
    if invalid:
        typer.echo(f"{invalid} of {checked} profile(s) invalid", err=True)
        raise typer.Exit(1)


# --------------------------------------------------------------------------- preview (translation work)


def _read_json(path: Path) -> object:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        typer.echo(f"{path}: cannot read JSON: {exc}", err=True)
        raise typer.Exit(1) from None


def _events_in(raw: object) -> list[object]:
    """A file holds one event, a list of events, or an object with an ``events`` list."""
    return [event for _, event in _located_events(raw)]


def _located_events(raw: object) -> list[tuple[str, object]]:
    """The events of a file with the JSON pointer of each (``""``, ``/3`` or ``/events/3``)."""
    prefix = ""
    if isinstance(raw, dict) and "events" in raw:
        raw, prefix = raw["events"], "/events"
    if isinstance(raw, list):
        return [(f"{prefix}/{i}", event) for i, event in enumerate(raw)]
    return [(prefix, raw)]


def _problems(path: Path, pointer: str, exc: Exception) -> list[str]:
    """``PATH: /pointer: reason`` per problem; never the input values (they may be patient data)."""
    from pydantic import ValidationError

    from gateway.errors import validation_errors

    if isinstance(exc, ValidationError):
        return [f"{path}: {e.pointer}: {e.reason}" for e in validation_errors(exc.errors(), pointer)]
    return [f"{path}: {pointer or '/'}: {exc}"]


def _print_step(step: dict[str, object]) -> None:
    import json

    head = f"=== {step['event_id']} {step['event_type']}: "
    refusal = step["refusal"]
    if isinstance(refusal, dict):
        typer.echo(f"{head}refused {refusal['code']}: {refusal['detail']}")
        for error in refusal["errors"]:
            typer.echo(f"    {error['pointer']}: {error['reason']}")
        return
    typer.echo(f"{head}accepted -> {step['status']}{' (late)' if step['late'] else ''}")
    typer.echo("--- FHIR transaction Bundle")
    typer.echo(json.dumps(step["bundle"], indent=2, ensure_ascii=False))
    messages = step["hl7v2"]
    assert isinstance(messages, list)
    typer.echo(f"--- HL7v2 ({len(messages)} message{'s' if len(messages) != 1 else ''})")
    for message in messages:
        if message.get("refused"):
            typer.echo(f"(not sent: {message['refused']})")
        typer.echo("\n".join(message["segments"]))
        typer.echo("")
    issues = step["issues"]
    assert isinstance(issues, list)
    typer.echo(f"--- issues ({len(issues)})")
    for issue in issues:
        typer.echo(f"{issue['severity']} {issue['code']} {issue['path']}: {issue['message']}")


@profile_app.command("preview")
def preview(
    profile_path: Annotated[Path, typer.Option("--profile", help="The site profile YAML.")],
    order_path: Annotated[Path, typer.Option("--order", help="Order JSON or a case file.")],
    events: Annotated[
        list[Path] | None, typer.Option("--events", help="Event JSON files: one event or a list each.")
    ] = None,
    more_events: Annotated[list[Path] | None, typer.Argument(help="More event files.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Gateway configuration.")] = None,
    placed_at: Annotated[str | None, typer.Option("--placed-at", help="Order placement time (ISO).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the preview as one JSON document.")] = False,
) -> None:
    """Print, per event, the FHIR transaction Bundle, the HL7v2 messages and the mapping issues.

    Nothing is stored: the events are replayed through the lifecycle in memory.  Exits 1 when the
    profile, the order or an events file is invalid.
    """
    import json
    from datetime import UTC, datetime

    from pydantic import ValidationError

    from gateway.config import load_settings
    from gateway.errors import GatewayError
    from gateway.intake.replay import preview_order
    from gateway.profile_limits import profile_limits
    from mappings.events import EventIn
    from mappings.orders import OrderIn
    from terminology import load_terminology

    settings = load_settings(config)
    try:
        profile = load_profile(profile_path, profile_limits(settings))
    except ProfileInvalid as exc:
        for problem in exc.problems:
            typer.echo(problem, err=True)
        raise typer.Exit(1) from None
    raw_order = _read_json(order_path)
    order_pointer = ""
    raw_events: list[tuple[Path, str, object]] = []
    if isinstance(raw_order, dict) and "order" in raw_order:
        placed_at = placed_at or raw_order.get("placed_at")
        if not events and not more_events:
            raw_events = [(order_path, at, e) for at, e in _located_events(raw_order)]
        raw_order, order_pointer = raw_order["order"], "/order"
    for path in [*(events or []), *(more_events or [])]:
        raw_events += [(path, at, e) for at, e in _located_events(_read_json(path))]
    problems: list[str] = []
    try:
        order = OrderIn.model_validate(raw_order)
    except ValidationError as exc:
        problems += _problems(order_path, order_pointer, exc)
    event_list: list[EventIn] = []
    for path, at, raw_event in raw_events:
        try:
            event_list.append(EventIn.model_validate(raw_event))
        except ValidationError as exc:
            problems += _problems(path, at, exc)
    try:
        placed = datetime.fromisoformat(placed_at) if placed_at else None
    except ValueError as exc:
        problems.append(f"--placed-at: {exc}")
    if problems:
        for problem in problems:
            typer.echo(problem, err=True)
        typer.echo(f"invalid order or event: {len(problems)} problem(s)", err=True)
        raise typer.Exit(1) from None
    now = datetime.now(UTC)
    try:
        steps = preview_order(settings, profile, order, event_list, load_terminology(),
                              now=now, placed_at=placed)
    except GatewayError as exc:
        typer.echo(f"order refused: {exc.code}: {exc.detail}", err=True)
        raise typer.Exit(1) from None
    result = [step.to_json() for step in steps]
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    for step in result:
        _print_step(step)


@profile_app.command("docs")
def docs(
    check: Annotated[bool, typer.Option("--check", help="Exit 1 if the file is out of date.")] = False,
) -> None:
    """Rewrite the generated parts of docs/profiles.md (keys, example, renderings) from the schema."""
    from gateway.cli.profile_docs import DOC, preview_steps, render_blocks, replace_blocks

    current = DOC.read_text(encoding="utf-8")
    fresh = replace_blocks(current, render_blocks(preview_steps()))
    if check:
        if fresh != current:
            typer.echo(f"{DOC}: out of date; run `cgt-gateway profile docs`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{DOC}: up to date")
        return
    DOC.write_text(fresh, encoding="utf-8")
    typer.echo(str(DOC))
