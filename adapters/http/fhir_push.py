"""Push a FHIR transaction Bundle to a site's FHIR server (POST to its base URL).

The Bundle's entries carry deterministic ids (PUT ``Type/id``), so a resend after an unknown
outcome is harmless.  A 401 with an OAuth2 token makes one more attempt with a fresh token; after
that the usual classification holds (:mod:`adapters.http.classify`).  Only the destination and
the Bundle id are logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from adapters.delivery_result import DeliveryOutcome
from adapters.http.auth import BearerToken, ClientCredentialsAuth, TokenUnavailable
from adapters.http.classify import classify_exception, classify_response

__all__ = ["FHIR_JSON", "FhirPushSender"]

FHIR_JSON = "application/fhir+json"
logger = logging.getLogger(__name__)


class FhirPushSender:
    def __init__(self, base_url: str, client: httpx.AsyncClient, *,
                 auth: BearerToken | ClientCredentialsAuth | None = None, timeout_s: float = 30.0,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = client
        self._auth = auth
        self._timeout = httpx.Timeout(timeout_s)
        self._now = now

    async def push(self, bundle: Mapping[str, Any] | bytes) -> DeliveryOutcome:
        """POST one transaction (or batch) Bundle; never raises for HTTP or network trouble."""
        body = bundle if isinstance(bundle, bytes) else _serialize(bundle)
        bundle_id = bundle.get("id") if isinstance(bundle, Mapping) else None
        started = time.perf_counter()
        outcome = await self._post(body)
        if outcome.http_status == 401 and isinstance(self._auth, ClientCredentialsAuth):
            self._auth.invalidate()  # the token was revoked or expired early: one more try
            outcome = await self._post(body)
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        outcome = DeliveryOutcome(outcome.status, http_status=outcome.http_status, detail=outcome.detail,
                                  latency_ms=latency_ms, retry_after_s=outcome.retry_after_s,
                                  warning=outcome.warning)
        logger.info("fhir push %s bundle=%s status=%s http=%s latency_ms=%s", self.base_url, bundle_id,
                    outcome.status, outcome.http_status, latency_ms)
        return outcome

    async def _post(self, body: bytes) -> DeliveryOutcome:
        headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
        if self._auth is not None:
            try:
                headers["Authorization"] = await self._auth.authorization()
            except TokenUnavailable as exc:
                return exc.outcome
        try:
            response = await self._client.post(self.base_url, content=body, headers=headers,
                                               timeout=self._timeout)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return classify_exception(exc)
        return classify_response(response, now=self._now())


def _serialize(bundle: Mapping[str, Any]) -> bytes:
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") not in ("transaction", "batch"):
        raise ValueError("only a transaction or batch Bundle can be pushed")
    return orjson.dumps(bundle)
