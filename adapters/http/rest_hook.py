"""A FHIR Subscription rest-hook: POST one notification Bundle to the subscriber's endpoint.

The endpoint and headers come from the subscription; redirects are never followed (the client is
built with ``follow_redirects=False``), every attempt has the subscription's timeout.  Only the
endpoint's scheme, host and path are logged (no query, no headers: they may hold credentials).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx

from adapters.delivery_result import DeliveryOutcome
from adapters.http.classify import classify_exception, classify_response

__all__ = ["RestHookSender"]

FHIR_JSON = "application/fhir+json"
logger = logging.getLogger(__name__)


class RestHookSender:
    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        *,
        timeout_s: float,
        content_type: str = FHIR_JSON,
        headers: Sequence[tuple[str, str]] = (),
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.url = url
        self._client = client
        self._timeout = httpx.Timeout(timeout_s)
        self._headers = [("Content-Type", content_type), *headers]
        self._now = now
        parts = urlsplit(url)
        self.destination = f"{parts.scheme}://{parts.netloc}{parts.path}"

    async def send(self, body: bytes, *, notification_id: str | None = None) -> DeliveryOutcome:
        started = time.perf_counter()
        try:
            response = await self._client.post(
                self.url, content=body, headers=self._headers, timeout=self._timeout
            )
            latency_ms = round((time.perf_counter() - started) * 1000, 3)
            outcome = classify_response(response, now=self._now(), latency_ms=latency_ms)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            latency_ms = round((time.perf_counter() - started) * 1000, 3)
            outcome = classify_exception(exc, latency_ms=latency_ms)
        logger.info(
            "rest-hook %s notification=%s status=%s http=%s latency_ms=%s",
            self.destination,
            notification_id,
            outcome.status,
            outcome.http_status,
            latency_ms,
        )
        return outcome
