"""Prometheus metrics: queue depth and oldest-message age per destination, attempts by outcome,
delivery latency.

Depth, age, outcome counts and the latency of recorded attempts (a summary: count and sum) are read
from the outbox tables at scrape time, so they are right whichever process (``serve`` or standalone
``worker``) did the delivering.  The latency histogram is fed by the in-process worker only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col

from adapters.delivery_result import DeliveryOutcome
from gateway.alerts.counts import AlertCollector
from gateway.delivery.outbox import DeliveryAttempt, MessageState, OutboxMessage, queue_stats

__all__ = ["GatewayMetrics"]


class _OutboxCollector(Collector):
    def __init__(self, engine: Engine, clock: Callable[[], datetime]) -> None:
        self._engine = engine
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | SummaryMetricFamily]:
        depth = GaugeMetricFamily("cgt_outbox_messages", "Outbox messages by destination and state",
                                  labels=["destination", "state"])
        age = GaugeMetricFamily("cgt_outbox_oldest_pending_age_seconds",
                                "Age of the oldest pending message per destination", labels=["destination"])
        outcomes = CounterMetricFamily("cgt_delivery_attempts",
                                       "Delivery attempts by destination and outcome",
                                       labels=["destination", "outcome"])
        latency = SummaryMetricFamily("cgt_delivery_attempt_latency_seconds",
                                      "Latency of recorded delivery attempts, by any worker process",
                                      labels=["destination", "outcome"])
        up = GaugeMetricFamily("cgt_outbox_database_up", "1 if the outbox could be read at scrape time")
        try:
            with Session(self._engine) as session:
                stats = queue_stats(session)
                by_destination, by_outcome = col(OutboxMessage.destination), col(DeliveryAttempt.outcome)
                latency_ms = col(DeliveryAttempt.latency_ms)
                rows = session.execute(
                    select(by_destination, by_outcome, func.count(), func.count(latency_ms),
                           func.coalesce(func.sum(latency_ms), 0.0))
                    .join(OutboxMessage, col(OutboxMessage.id) == col(DeliveryAttempt.message_id))
                    .group_by(by_destination, by_outcome)).all()
        except SQLAlchemyError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        now = self._clock()
        drained = {destination for destination, *_ in stats}
        for destination, state, count, oldest in stats:
            depth.add_metric([destination, state], count)
            if state == MessageState.pending and oldest is not None:
                drained.discard(destination)
                oldest_aware = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
                age.add_metric([destination], max(0.0, (now - oldest_aware).total_seconds()))
        for destination in sorted(drained):  # an empty queue is depth 0, age 0, not a missing series
            depth.add_metric([destination, MessageState.pending], 0)
            age.add_metric([destination], 0.0)
        for destination, outcome, count, timed, total_ms in rows:
            outcomes.add_metric([destination, outcome], int(count))
            latency.add_metric([destination, outcome], count_value=int(timed),
                               sum_value=float(total_ms) / 1000.0)
        yield from (depth, age, outcomes, latency, up)


class GatewayMetrics:
    """One registry per app (tests build many apps; the global registry would collide)."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_OutboxCollector(engine, clock or (lambda: datetime.now(UTC))))
        self.registry.register(AlertCollector(engine))  # issue 16: cgt_alerts{kind,state}
        self.latency = Histogram("cgt_delivery_latency_seconds", "Latency of one delivery attempt",
                                 ["destination", "outcome"], registry=self.registry,
                                 buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))

    def observe(self, message: OutboxMessage, outcome: DeliveryOutcome) -> None:
        if outcome.latency_ms is not None:
            self.latency.labels(message.destination, outcome.status).observe(outcome.latency_ms / 1000.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
