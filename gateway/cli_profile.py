"""``cgt-gateway profile validate|preview`` (owned by the profile work)."""

import typer

__all__ = ["profile_app"]

profile_app = typer.Typer(help="Validate and preview site mapping profiles.", no_args_is_help=True)
