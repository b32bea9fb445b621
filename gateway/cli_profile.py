"""``cgt-gateway profile validate|preview`` (owned by the profile work)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mappings.profile import ProfileInvalid, load_profile

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
) -> None:
    """Validate site profiles: print ``PATH: ok (version ...)`` or every problem, one a line.

    Problems read ``file:line: field.path: reason``.  Exits 1 if any profile is invalid.
    """
    invalid = 0
    checked = 0
    for given in paths:
        for path in _profile_files(given):
            checked += 1
            try:
                profile = load_profile(path)
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
