"""Manufacturer webhooks, signed with HMAC-SHA256 over the raw request body.

The signature travels as ``X-CGT-Signature: sha256=<hex>``; the receiver recomputes it over the
exact bytes it received (before any JSON parsing) with the shared secret and compares in constant
time (:func:`verify_signature`).  ``X-CGT-Delivery`` carries our delivery id so the receiver can
drop a resend it has already processed.  Only the destination and the delivery id are logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from adapters.delivery_result import DeliveryOutcome
from adapters.http.classify import classify_exception, classify_response

__all__ = ["DELIVERY_HEADER", "SIGNATURE_HEADER", "WebhookSender", "sign_body", "verify_signature"]

SIGNATURE_HEADER = "X-CGT-Signature"
DELIVERY_HEADER = "X-CGT-Delivery"
_SCHEME = "sha256="
logger = logging.getLogger(__name__)


def _key(secret: str | bytes) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    if not key:
        raise ValueError("a webhook secret must not be empty")
    return key


def sign_body(secret: str | bytes, body: bytes) -> str:
    """The signature header value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return _SCHEME + hmac.new(_key(secret), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str | bytes, body: bytes, signature: str | None) -> bool:
    """True only if ``signature`` is the HMAC-SHA256 of exactly these bytes under ``secret``."""
    if not signature or not signature.startswith(_SCHEME):
        return False
    return hmac.compare_digest(sign_body(secret, body), signature.strip())


class WebhookSender:
    def __init__(self, url: str, secret: str | bytes, client: httpx.AsyncClient, *,
                 timeout_s: float = 30.0, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        _key(secret)
        self.url = url
        self._secret = secret
        self._client = client
        self._timeout = httpx.Timeout(timeout_s)
        self._now = now
        parts = urlsplit(url)
        self.destination = f"{parts.scheme}://{parts.netloc}{parts.path}"  # no query: it may hold keys

    async def send(self, body: Mapping[str, Any] | bytes, *,
                   delivery_id: str | None = None) -> DeliveryOutcome:
        """POST the body (a mapping is serialized to JSON once; the signature covers those bytes)."""
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign_body(self._secret, raw)}
        if delivery_id is not None:
            headers[DELIVERY_HEADER] = delivery_id
        started = time.perf_counter()
        try:
            response = await self._client.post(self.url, content=raw, headers=headers, timeout=self._timeout)
            latency_ms = round((time.perf_counter() - started) * 1000, 3)
            outcome = classify_response(response, now=self._now(), latency_ms=latency_ms)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            latency_ms = round((time.perf_counter() - started) * 1000, 3)
            outcome = classify_exception(exc, latency_ms=latency_ms)
        logger.info("webhook %s delivery=%s status=%s http=%s latency_ms=%s", self.destination, delivery_id,
                    outcome.status, outcome.http_status, latency_ms)
        return outcome
