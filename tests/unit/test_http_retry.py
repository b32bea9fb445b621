"""Backoff policy and Retry-After parsing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from adapters.delivery_result import DeliveryOutcome
from adapters.http.classify import parse_retry_after
from adapters.retry import RetryPolicy

NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)


def test_delay_is_exponential_and_capped() -> None:
    policy = RetryPolicy(initial_s=1, max_delay_s=30, jitter_s=0)
    assert [policy.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert policy.delay(10_000) == 30  # no overflow


def test_jitter_stays_within_bounds() -> None:
    policy = RetryPolicy(initial_s=1, max_delay_s=30, jitter_s=0.5)
    delays = {policy.delay(3) for _ in range(200)}
    assert all(4 <= d <= 4.5 for d in delays) and len(delays) > 1


def test_retry_after_is_a_floor_and_is_capped() -> None:
    policy = RetryPolicy(initial_s=1, max_delay_s=30, jitter_s=0, max_retry_after_s=600)
    assert policy.delay(1, retry_after_s=20) == 20
    assert policy.delay(5, retry_after_s=2) == 16  # never shorter than our own backoff
    assert policy.delay(1, retry_after_s=86_400) == 600
    assert policy.delay(1, retry_after_s=-5) == 1


@pytest.mark.parametrize("kwargs", [{"initial_s": -1}, {"exp_base": 0.5}, {"max_attempts": 0}])
def test_invalid_policies(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_run_stops_at_dead_and_reports_every_attempt() -> None:
    outcomes = iter([DeliveryOutcome("retry"), DeliveryOutcome("dead", detail="AE")])
    seen: list[tuple[int, str]] = []
    delays: list[float] = []

    async def attempt() -> DeliveryOutcome:
        return next(outcomes)

    async def sleep(delay: float) -> None:
        delays.append(delay)

    policy = RetryPolicy(initial_s=0.25, jitter_s=0)
    result = asyncio.run(policy.run(attempt, sleep=sleep, on_attempt=lambda n, o: seen.append((n, o.status))))
    assert result.status == "dead" and seen == [(1, "retry"), (2, "dead")] and delays == [0.25]


def test_run_gives_back_the_last_retry_outcome_when_attempts_run_out() -> None:
    calls = 0

    async def attempt() -> DeliveryOutcome:
        nonlocal calls
        calls += 1
        return DeliveryOutcome("retry", detail=f"timeout {calls}")

    async def sleep(delay: float) -> None:
        return None

    result = asyncio.run(RetryPolicy(max_attempts=3).run(attempt, sleep=sleep))
    assert result.status == "retry" and result.detail == "timeout 3" and calls == 3


def test_run_lets_unexpected_exceptions_through() -> None:
    async def attempt() -> DeliveryOutcome:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        asyncio.run(RetryPolicy().run(attempt))


@pytest.mark.parametrize("value, expected", [
    ("120", 120.0), (" 0 ", 0.0), ("Sat, 21 Nov 2026 12:01:00 GMT", 60.0),
    ("Sat, 21 Nov 2026 11:00:00 GMT", 0.0), (None, None), ("", None), ("soon", None), ("-3", None),
    ("1.5", None),
])
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected
