"""Prometheus metrics (``GET /metrics``): the outbox and delivery, intake, HTTP requests, site requests.

Read from the database at scrape time, so they are right whichever process (``serve`` or a
standalone ``worker``) did the work:

* ``cgt_outbox_messages{destination,state}``, ``cgt_outbox_oldest_pending_age_seconds{destination}``,
  ``cgt_delivery_attempts_total{destination,outcome}``, ``cgt_outbox_database_up``;
* ``cgt_delivery_latency_seconds{destination,outcome}``: THE delivery latency histogram, one
  observation per recorded attempt that has a latency.  (Until issue 15 there were two: this name,
  fed by the in-process worker only, and the summary ``cgt_delivery_attempt_latency_seconds``
  computed from the attempts table.  The summary is gone; its ``_count``/``_sum`` are now
  ``cgt_delivery_latency_seconds_count``/``_sum``, same labels, every worker process counted.)
* ``cgt_site_requests{kind,state}``: site requests (inbound, HL7v2 and FHIR) by kind and current state.

Counted in this process by :class:`MetricsMiddleware` (since the process started):

* ``cgt_http_request_duration_seconds{method,route,status}``: every HTTP request; ``route`` is the
  matched route's path *template* (``/v1/orders/{order_id}``), never the raw path, so no id or
  patient data becomes a label; a request no route matched is ``<unmatched>``;
* ``cgt_intake_requests_total{kind,outcome,code}`` and ``cgt_intake_duration_seconds{kind,outcome}``:
  the manufacturer's writes, ``kind`` ``order`` (POST /v1/orders), ``event`` (POST
  /v1/orders/{order_id}/events) or ``retraction``; ``outcome`` ``accepted`` (201, or 200 for a
  retraction), ``replayed`` (200: the identical order or event again), ``rejected`` (4xx) or
  ``error`` (5xx); ``code`` the problem+json ``code`` of a refusal (``coi-mismatch``,
  ``validation-failed``, ...; one of the gateway's own fixed codes, else ``other``), empty otherwise.

Under ``serve --processes N`` (issue 17) a scrape reaches whichever process accepts it, so the
counted metrics are kept in prometheus_client's multiprocess mode: the parent names a directory in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's own variable, read by it when it is imported), each
process writes its counts there, and :meth:`GatewayMetrics.render` sums every process's (a process
that stopped keeps its counts until the server restarts, so counters never go back).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector
from sqlalchemy import Engine, case, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.alerts.counts import AlertCollector
from gateway.delivery.outbox import DeliveryAttempt, MessageState, OutboxMessage, queue_stats
from gateway.store.site_request_tables import SiteRequestRow

__all__ = ["DELIVERY_LATENCY_BUCKETS", "GatewayMetrics", "MetricsMiddleware", "INTAKE_ROUTES"]

DELIVERY_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = "<unmatched>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})  # any other: OTHER
# (method, route template) -> intake kind
INTAKE_ROUTES = {
    ("POST", "/v1/orders"): "order",
    ("POST", "/v1/orders/{order_id}/events"): "event",
    ("POST", "/v1/orders/{order_id}/events/{event_id}/retract"): "retraction",
}
_PROBLEM_BODY_MAX = 16 * 1024  # a refusal's body is read for its code up to this size
_CODE = re.compile(r"^[a-z][a-z0-9-]{0,47}$")


class _DatabaseCollector(Collector):
    def __init__(self, engine: Engine, clock: Callable[[], datetime]) -> None:
        self._engine = engine
        self._clock = clock

    def collect(self) -> Iterator[Any]:
        depth = GaugeMetricFamily("cgt_outbox_messages", "Outbox messages by destination and state",
                                  labels=["destination", "state"])
        age = GaugeMetricFamily("cgt_outbox_oldest_pending_age_seconds",
                                "Age of the oldest pending message per destination", labels=["destination"])
        outcomes = CounterMetricFamily("cgt_delivery_attempts",
                                       "Delivery attempts by destination and outcome",
                                       labels=["destination", "outcome"])
        latency = HistogramMetricFamily("cgt_delivery_latency_seconds",
                                        "Latency of one delivery attempt (every recorded attempt)",
                                        labels=["destination", "outcome"])
        site_requests = GaugeMetricFamily("cgt_site_requests", "Site requests by kind and current state",
                                          labels=["kind", "state"])
        up = GaugeMetricFamily("cgt_outbox_database_up", "1 if the outbox could be read at scrape time")
        try:
            with Session(self._engine) as session:
                stats = queue_stats(session)
                attempts = self._attempts(session)
                requests = session.execute(
                    select(col(SiteRequestRow.kind), col(SiteRequestRow.state), func.count())
                    .group_by(col(SiteRequestRow.kind), col(SiteRequestRow.state))).all()
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
        for destination, outcome, count, total_ms, *cumulative in attempts:
            outcomes.add_metric([destination, outcome], int(count))
            timed = int(cumulative[-1])
            buckets = [(_le(bound), int(n)) for bound, n in zip(DELIVERY_LATENCY_BUCKETS, cumulative[:-1],
                                                               strict=True)]
            latency.add_metric([destination, outcome], buckets + [("+Inf", timed)],
                               sum_value=float(total_ms) / 1000.0)
        for kind, state, count in requests:
            site_requests.add_metric([kind, state], int(count))
        yield from (depth, age, outcomes, latency, site_requests, up)

    @staticmethod
    def _attempts(session: Session) -> list[Any]:
        """Per (destination, outcome): attempts, latency sum (ms), then cumulative bucket counts and
        the number of timed attempts; one grouped query."""
        by_destination, by_outcome = col(OutboxMessage.destination), col(DeliveryAttempt.outcome)
        latency_ms = col(DeliveryAttempt.latency_ms)
        bucket_counts = [func.coalesce(func.sum(case((latency_ms <= bound * 1000.0, 1), else_=0)), 0)
                         for bound in DELIVERY_LATENCY_BUCKETS]
        return list(session.execute(
            select(by_destination, by_outcome, func.count(), func.coalesce(func.sum(latency_ms), 0.0),
                   *bucket_counts, func.count(latency_ms))
            .join(OutboxMessage, col(OutboxMessage.id) == col(DeliveryAttempt.message_id))
            .group_by(by_destination, by_outcome)).all())


def _le(bound: float) -> str:
    return repr(float(bound))


class GatewayMetrics:
    """One registry per app (tests build many apps; the global registry would collide)."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] | None = None) -> None:
        self.registry = CollectorRegistry()
        self._database = [_DatabaseCollector(engine, clock or (lambda: datetime.now(UTC))),
                          AlertCollector(engine)]  # issue 16: cgt_alerts{kind,state}
        for collector in self._database:
            self.registry.register(collector)
        self._multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")  # issue 17: serve --processes
        self.http = Histogram("cgt_http_request_duration_seconds",
                              "HTTP requests by method, route template and status",
                              ["method", "route", "status"], registry=self.registry, buckets=HTTP_BUCKETS)
        self.intake = Counter("cgt_intake_requests",
                              "Manufacturer writes (orders, events, retractions) by outcome",
                              ["kind", "outcome", "code"], registry=self.registry)
        self.intake_latency = Histogram("cgt_intake_duration_seconds",
                                        "Time to answer a manufacturer write, by kind and outcome",
                                        ["kind", "outcome"], registry=self.registry, buckets=HTTP_BUCKETS)
        self._codes_seen: set[str] = set()

    def record_http(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http.labels(method, route, str(status)).observe(seconds)

    def record_intake(self, kind: str, status: int, seconds: float, problem_body: bytes) -> None:
        if status >= 500:
            outcome, code = "error", ""
        elif status >= 400:
            outcome, code = "rejected", self._code(problem_body)
        elif status == 200 and kind != "retraction":
            outcome, code = "replayed", ""
        else:
            outcome, code = "accepted", ""
        self.intake.labels(kind, outcome, code).inc()
        self.intake_latency.labels(kind, outcome).observe(seconds)

    def _code(self, body: bytes) -> str:
        """The problem+json ``code`` (the gateway's fixed codes, at most 100 distinct), else ``other``."""
        try:
            code = json.loads(body).get("code")
        except (ValueError, AttributeError):
            return "other"
        if not isinstance(code, str) or not _CODE.match(code):
            return "other"
        if code not in self._codes_seen and len(self._codes_seen) >= 100:
            return "other"
        self._codes_seen.add(code)
        return code

    def render(self) -> bytes:
        if not self._multiprocess_dir:
            return generate_latest(self.registry)
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()  # every process's counts (this one's included), and the database's
        MultiProcessCollector(registry, path=self._multiprocess_dir)
        for collector in self._database:
            registry.register(collector)
        return generate_latest(registry)


class MetricsMiddleware:
    """Times every HTTP request and labels it with the matched route's path template (plain ASGI)."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        body = bytearray()

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and status >= 400 and len(body) < _PROBLEM_BODY_MAX:
                body.extend(message.get("body", b"")[: _PROBLEM_BODY_MAX - len(body)])
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None)
            template = route if isinstance(route, str) else UNMATCHED
            method = str(scope.get("method", ""))
            method = method if method in _METHODS else "OTHER"
            self.metrics.record_http(method, template, status, seconds)
            kind = INTAKE_ROUTES.get((method, template))
            if kind is not None:
                self.metrics.record_intake(kind, status, seconds, bytes(body))
