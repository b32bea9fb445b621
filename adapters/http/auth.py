"""Credentials for pushing to a site's FHIR server: a static bearer token, or OAuth2 client credentials.

:class:`ClientCredentialsAuth` fetches a token from the token endpoint (RFC 6749 section 4.4) with
the injected client, caches it until ``expires_in`` minus a leeway, shares one fetch between
concurrent callers, and forgets it when the resource server answers 401.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import httpx

from adapters.delivery_result import DeliveryOutcome
from adapters.http.classify import classify_exception, classify_response

__all__ = ["BearerToken", "ClientCredentials", "ClientCredentialsAuth", "TokenUnavailable"]

_ACCEPT_JSON = {"Accept": "application/json"}


class TokenUnavailable(Exception):
    """No token could be had; ``outcome`` says whether that may change (retry) or not (dead)."""

    def __init__(self, outcome: DeliveryOutcome) -> None:
        super().__init__(outcome.detail)
        self.outcome = outcome


@dataclass(frozen=True)
class BearerToken:
    token: str

    async def authorization(self) -> str:
        return f"Bearer {self.token}"

    def invalidate(self) -> None:
        """A static token cannot be refreshed."""


@dataclass(frozen=True)
class ClientCredentials:
    token_url: str
    client_id: str
    client_secret: str
    scope: str | None = None  # e.g. "system/Task.write system/Bundle.write"
    auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"

    def __repr__(self) -> str:  # never print the secret
        return f"ClientCredentials(token_url={self.token_url!r}, client_id={self.client_id!r})"


class ClientCredentialsAuth:
    def __init__(self, credentials: ClientCredentials, client: httpx.AsyncClient, *,
                 leeway_s: float = 30.0, default_lifetime_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.credentials = credentials
        self._client = client
        self._leeway_s = leeway_s
        self._default_lifetime_s = default_lifetime_s  # when the server does not say expires_in
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def authorization(self) -> str:
        """``Bearer <token>``, fetching a new token only when there is none or it is about to expire.

        Raises :class:`TokenUnavailable`.
        """
        async with self._lock:
            if self._token is None or self._clock() >= self._expires_at:
                await self._fetch()
            assert self._token is not None
            return f"Bearer {self._token}"

    def invalidate(self) -> None:
        self._token = None

    async def _fetch(self) -> None:
        c = self.credentials
        form = {"grant_type": "client_credentials"}
        if c.scope:
            form["scope"] = c.scope
        if c.auth_method == "client_secret_post":
            form |= {"client_id": c.client_id, "client_secret": c.client_secret}
        started = self._clock()
        try:
            if c.auth_method == "client_secret_basic":
                response = await self._client.post(c.token_url, data=form, headers=_ACCEPT_JSON,
                                                   auth=httpx.BasicAuth(c.client_id, c.client_secret))
            else:
                response = await self._client.post(c.token_url, data=form, headers=_ACCEPT_JSON)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise TokenUnavailable(classify_exception(exc, what="OAuth2 token endpoint")) from exc
        self.fetches += 1
        outcome = classify_response(response, what="OAuth2 token endpoint")
        if not outcome.delivered:
            raise TokenUnavailable(outcome)
        try:
            payload = response.json()
            token = payload["access_token"]
            lifetime = float(payload.get("expires_in", self._default_lifetime_s))
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenUnavailable(DeliveryOutcome(
                "retry", http_status=response.status_code,
                detail=f"OAuth2 token endpoint: unusable token response ({type(exc).__name__})")) from exc
        if not isinstance(token, str) or not token:
            raise TokenUnavailable(DeliveryOutcome("retry", http_status=response.status_code,
                                                   detail="OAuth2 token endpoint: empty access_token"))
        self._token = token
        self._expires_at = started + max(lifetime - self._leeway_s, 0.0)
