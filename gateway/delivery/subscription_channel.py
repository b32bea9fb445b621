"""The delivery side of a FHIR Subscription's queue (``<subscription id>/subscription``).

Before a send, :func:`target` reads where and how to notify (a subscription that is ``off`` or in
``error`` gets nothing).  After it, :func:`record_outcome` keeps the subscription's state in step, in
one transaction: a delivery while ``requested`` (the handshake leads the FIFO queue) makes it
``active``; a refused handshake (a permanent failure) or ``max_failures`` failed deliveries in a row
put it in ``error`` with the reason on ``Subscription.error``, and its queued notifications are
skipped (they stay in ``$events``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from adapters.delivery_result import DeliveryOutcome
from gateway.delivery.outbox import MessageState, OutboxMessage
from gateway.store.db import write_session
from gateway.store.subscription_tables import SUBSCRIPTIONS

__all__ = ["SUFFIX", "SubscriptionTarget", "subscription_of", "target", "record_outcome", "skip_pending"]

SUFFIX = "/subscription"
_S = SUBSCRIPTIONS
_O: sa.Table = OutboxMessage.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class SubscriptionTarget:
    endpoint: str
    timeout_s: int
    payload: str
    headers: tuple[tuple[str, str], ...]

    def __repr__(self) -> str:  # headers may hold credentials
        return f"SubscriptionTarget(timeout_s={self.timeout_s})"


def subscription_of(destination: str) -> str | None:
    return destination.removesuffix(SUFFIX) if destination.endswith(SUFFIX) else None


def target(engine: Engine, subscription_id: str) -> SubscriptionTarget | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(_S.c.status, _S.c.endpoint, _S.c.timeout_s, _S.c.payload, _S.c.headers).where(
                _S.c.id == subscription_id
            )
        ).first()
    if row is None or row.status not in ("requested", "active"):
        return None
    headers = tuple((h.split(":", 1)[0].strip(), h.split(":", 1)[1].strip()) for h in row.headers or ())
    return SubscriptionTarget(row.endpoint, int(row.timeout_s), row.payload, headers)


def skip_pending(conn: sa.Connection, destination: str, reason: str, now: datetime) -> None:
    """Take every pending notification of ``destination`` out of the queue (with the reason)."""
    conn.execute(
        _O.update()
        .where(_O.c.destination == destination, _O.c.state == MessageState.pending.value)
        .values(state=MessageState.skipped.value, skip_reason=reason, finished_at=now)
    )


def _why(outcome: DeliveryOutcome) -> str:
    if outcome.http_status is not None:
        return f"HTTP {outcome.http_status}"
    return (outcome.detail or outcome.status)[:200]


def record_outcome(
    engine: Engine, subscription_id: str, outcome: DeliveryOutcome, *, max_failures: int, now: datetime
) -> None:
    with write_session(engine) as session:
        conn = session.connection()
        row = conn.execute(
            sa.select(_S.c.status, _S.c.consecutive_failures, _S.c.version_id)
            .where(_S.c.id == subscription_id)
            .with_for_update()
        ).first()
        if row is None or row.status not in ("requested", "active"):
            return
        values: dict[str, object]
        if outcome.delivered:
            values = {"consecutive_failures": 0}
            if row.status == "requested":
                values.update(status="active", error=None, version_id=row.version_id + 1, updated_at=now)
        else:
            failures = row.consecutive_failures + 1
            refused = row.status == "requested" and outcome.status == "dead"
            if refused or failures >= max_failures:
                reason = (
                    f"handshake refused ({_why(outcome)})"
                    if refused
                    else f"{failures} deliveries in a row failed; the last: {_why(outcome)}"
                )
                values = {
                    "consecutive_failures": failures,
                    "status": "error",
                    "error": reason,
                    "version_id": row.version_id + 1,
                    "updated_at": now,
                }
                skip_pending(conn, subscription_id + SUFFIX, f"subscription in error: {reason}", now)
            else:
                values = {"consecutive_failures": failures}
        conn.execute(_S.update().where(_S.c.id == subscription_id).values(**values))
