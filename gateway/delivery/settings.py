"""How the delivery worker paces itself: lease length, polling, retry backoff, alerts and stop grace."""

from __future__ import annotations

from dataclasses import dataclass

from adapters.retry import RetryPolicy

__all__ = ["WorkerSettings"]


@dataclass(frozen=True)
class WorkerSettings:
    """``lease_seconds`` must exceed the longest single send (connect + read deadlines): the lease
    is also renewed every third of it while a send is under way."""

    lease_seconds: float = 30.0
    poll_interval_s: float = 0.2
    retry: RetryPolicy = RetryPolicy()  # backoff between attempts of one message (the queue waits)
    db_error_pause_s: float = 1.0
    max_attempts_before_alert: int = 10
    stop_grace_s: float = 5.0  # on stop, sends under way may finish and be recorded for this long
    listen: bool = True  # on PostgreSQL, LISTEN for rows other processes enqueue (else poll only)
