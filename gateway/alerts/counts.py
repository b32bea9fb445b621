"""``/metrics``: alerts by kind and state (``cgt_alerts``), read from the table at scrape time, so the
counts are right whichever process raised them."""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from gateway.alerts.tables import ALERTS
from mappings.milestones import ALERT_KINDS

__all__ = ["AlertCollector"]

_STATES = ("open", "acknowledged", "resolved")
_COUNTS = sa.select(ALERTS.c.kind, ALERTS.c.state, sa.func.count()).group_by(ALERTS.c.kind, ALERTS.c.state)


class AlertCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "cgt_alerts", "Milestone alerts by kind and state", labels=["kind", "state"]
        )
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(_COUNTS).all()
        except SQLAlchemyError:
            return
        counts = {(kind, state): int(n) for kind, state, n in rows}
        for kind in ALERT_KINDS:  # every series present, zero included
            for state in _STATES:
                gauge.add_metric([kind, state], counts.get((kind, state), 0))
        yield gauge
