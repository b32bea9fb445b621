"""Backoff for deliveries: exponential with jitter and a cap, honouring the peer's Retry-After.

The loop itself is tenacity's: :meth:`RetryPolicy.run` calls one attempt after another while the
outcome says ``retry`` (the same message, so the same MSH-10), sleeping :meth:`RetryPolicy.delay`
in between, and hands back the first ``delivered``/``dead`` outcome, or the last ``retry`` one when
``max_attempts`` runs out.  Every attempt is reported to ``on_attempt`` so the outbox can record it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_attempt, stop_never
from tenacity.wait import wait_base

from adapters.delivery_result import DeliveryOutcome

__all__ = ["AttemptFn", "RetryPolicy"]

AttemptFn = Callable[[], Awaitable[DeliveryOutcome]]


@dataclass(frozen=True)
class RetryPolicy:
    initial_s: float = 1.0  # wait after the first failed attempt (before jitter)
    max_delay_s: float = 300.0  # cap of the exponential part
    exp_base: float = 2.0
    jitter_s: float = 1.0  # uniform 0..jitter_s added, so a fleet of queues does not retry in step
    max_retry_after_s: float = 3600.0  # a Retry-After beyond this is not believed
    max_attempts: int | None = None  # None: hold the queue until delivered or dead

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.max_delay_s < 0 or self.jitter_s < 0 or self.exp_base < 1:
            raise ValueError("backoff settings must be non-negative and exp_base at least 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based).

        ``min(initial * base**(attempt-1), max_delay) + jitter``, but never less than the peer's
        Retry-After (itself capped at ``max_retry_after_s``).
        """
        try:
            exponential = min(self.initial_s * self.exp_base ** (attempt - 1), self.max_delay_s)
        except OverflowError:
            exponential = self.max_delay_s
        backoff = exponential + random.uniform(0, self.jitter_s)
        if retry_after_s is None:
            return backoff
        return max(backoff, min(max(retry_after_s, 0.0), self.max_retry_after_s))

    async def run(self, attempt: AttemptFn, *,
                  sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                  on_attempt: Callable[[int, DeliveryOutcome], None] | None = None) -> DeliveryOutcome:
        """Attempt until delivered or dead (or ``max_attempts``); exceptions from ``attempt`` propagate."""

        def last_outcome(state: RetryCallState) -> DeliveryOutcome:
            assert state.outcome is not None
            result: DeliveryOutcome = state.outcome.result()
            return result

        retrying = AsyncRetrying(
            sleep=sleep,
            stop=stop_never if self.max_attempts is None else stop_after_attempt(self.max_attempts),
            wait=_PolicyWait(self),
            retry=retry_if_result(lambda outcome: bool(outcome.retryable)),
            retry_error_callback=last_outcome,
        )
        attempts = 0

        async def call() -> DeliveryOutcome:  # a coroutine function, whatever ``attempt`` is
            nonlocal attempts
            result = await attempt()
            attempts += 1
            if on_attempt is not None:
                on_attempt(attempts, result)
            return result

        outcome: DeliveryOutcome = await retrying(call)
        return outcome


class _PolicyWait(wait_base):
    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy

    def __call__(self, retry_state: RetryCallState) -> float:
        retry_after: float | None = None
        if retry_state.outcome is not None and not retry_state.outcome.failed:
            retry_after = retry_state.outcome.result().retry_after_s
        return self._policy.delay(retry_state.attempt_number, retry_after)
