"""Helpers shared by the console tests (no tests here): sign in through the form, post a form with
the page's CSRF token."""

from __future__ import annotations

import re
from typing import Any

import httpx

__all__ = ["csrf_of", "sign_in", "post_form"]

_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match is not None, "no CSRF field on the page"
    return match.group(1)


def sign_in(client: Any, token: str) -> httpx.Response:
    """Open the sign-in page and post the token with its CSRF value; returns the POST's response."""
    page = client.get("/console/sign-in")
    assert page.status_code == 200, page.text
    return client.post("/console/sign-in", data={"csrf": csrf_of(page.text), "token": token},
                       follow_redirects=False)


def post_form(client: Any, path: str, data: dict[str, Any], page: str = "/console") -> httpx.Response:
    """POST ``data`` to ``path`` with the CSRF token of ``page`` (a signed-in page)."""
    html = client.get(page).text
    return client.post(path, data={"csrf": csrf_of(html), **data}, follow_redirects=False)
