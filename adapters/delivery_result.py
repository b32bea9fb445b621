"""What one delivery attempt came to, whatever the transport (MLLP, FHIR push, webhook).

The outbox records one :class:`DeliveryOutcome` per attempt.  ``status`` drives the queue:
``delivered`` (done), ``retry`` (hold the queue, resend the same message later), ``dead``
(dead-letter it, alert, move on).  ``warning`` is set when something is worth an operator's eye
even though the status says what to do (an ACK whose MSA-2 does not match, an AA with a warning ERR).
``detail`` never holds message content: only ACK text, an HTTP response body or an error summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["DeliveryOutcome", "DeliveryStatus"]

DeliveryStatus = Literal["delivered", "retry", "dead"]


@dataclass(frozen=True)
class DeliveryOutcome:
    status: DeliveryStatus
    ack_code: str | None = None  # MSA-1 of the ACK that decided it (MLLP)
    http_status: int | None = None  # HTTP senders
    detail: str | None = None  # ACK text, response body, or what went wrong
    latency_ms: float | None = None  # send to answer (or to failure)
    retry_after_s: float | None = None  # the peer's own wish (HTTP Retry-After)
    warning: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status == "delivered"

    @property
    def retryable(self) -> bool:
        return self.status == "retry"
