"""What an HTTP answer (or failure) means for a delivery: retry only what can succeed later.

Retryable: connection errors and timeouts, 408, 429 and 5xx (a ``Retry-After`` in seconds or as an
HTTP date is honoured).  Any other 3xx/4xx is permanent: dead-letter at once, keeping the response
body (cut to ``MAX_BODY_KEPT`` characters) for the operator.  httpx exceptions stop here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from adapters.delivery_result import DeliveryOutcome

__all__ = ["MAX_BODY_KEPT", "classify_exception", "classify_response", "parse_retry_after"]

MAX_BODY_KEPT = 16_000
_RETRYABLE_STATUS = frozenset({408, 429})


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent/bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def classify_response(response: httpx.Response, *, now: datetime | None = None,
                      latency_ms: float | None = None, what: str = "") -> DeliveryOutcome:
    status = response.status_code
    prefix = f"{what}: " if what else ""
    if 200 <= status < 300:
        return DeliveryOutcome("delivered", http_status=status, latency_ms=latency_ms)
    body = _body(response)
    if status in _RETRYABLE_STATUS or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now or datetime.now(UTC))
        return DeliveryOutcome("retry", http_status=status, latency_ms=latency_ms,
                               detail=f"{prefix}HTTP {status}: {body}" if body else f"{prefix}HTTP {status}",
                               retry_after_s=retry_after)
    return DeliveryOutcome("dead", http_status=status, latency_ms=latency_ms,
                           detail=f"{prefix}HTTP {status}: {body}" if body else f"{prefix}HTTP {status}")


def classify_exception(exc: httpx.HTTPError | httpx.InvalidURL, *, latency_ms: float | None = None,
                       what: str = "") -> DeliveryOutcome:
    if isinstance(exc, httpx.HTTPStatusError):  # from raise_for_status(): judge the response itself
        return classify_response(exc.response, latency_ms=latency_ms, what=what)
    prefix = f"{what}: " if what else ""
    detail = f"{prefix}{type(exc).__name__}: {exc}"
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.TooManyRedirects | httpx.InvalidURL):
        return DeliveryOutcome("dead", detail=detail, latency_ms=latency_ms)  # configuration, not luck
    return DeliveryOutcome("retry", detail=detail, latency_ms=latency_ms)


def _body(response: httpx.Response) -> str:
    try:
        text = response.text
    except (UnicodeDecodeError, LookupError):
        text = response.content.decode("utf-8", errors="replace")
    return text[:MAX_BODY_KEPT]
