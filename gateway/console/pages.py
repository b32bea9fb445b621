"""Rendering console pages: one Jinja2 environment (autoescape on for every template), strict headers."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined

__all__ = ["SECURITY_HEADERS", "environment", "render_html"]

# No script at all: the console is plain forms and links (CONVENTIONS 11); the CSP says so.
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=PackageLoader("gateway.console", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env


def render_html(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    body = environment().get_template(template).render(**context)
    return HTMLResponse(body, status_code=status, headers=dict(SECURITY_HEADERS))
