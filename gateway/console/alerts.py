"""The alerts page: open alerts first (newest first), then the acknowledged ones; acknowledging
records who and a note (:class:`gateway.console.tables.AlertAckRow`).  Both lists are capped."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from gateway.console.tables import AlertAckRow
from gateway.delivery.outbox import DeliveryAlert
from gateway.store.db import read_session

__all__ = ["OPEN_PAGE", "DONE_PAGE", "AlertLists", "alert_lists", "acknowledge"]

OPEN_PAGE = 100
DONE_PAGE = 50


@dataclass
class AlertLists:
    open: list[DeliveryAlert]
    open_more: bool
    done: list[tuple[DeliveryAlert, AlertAckRow]]


def alert_lists(engine: Engine) -> AlertLists:
    with read_session(engine) as session:
        acked = sa.select(AlertAckRow.alert_id).where(col(AlertAckRow.alert_id) == col(DeliveryAlert.id))
        open_rows = list(session.exec(select(DeliveryAlert).where(~sa.exists(acked))
                                      .order_by(col(DeliveryAlert.id).desc()).limit(OPEN_PAGE + 1)).all())
        done = [(alert, ack) for alert, ack in session.exec(
            select(DeliveryAlert, AlertAckRow)
            .join(AlertAckRow, col(AlertAckRow.alert_id) == col(DeliveryAlert.id))
            .order_by(col(DeliveryAlert.id).desc()).limit(DONE_PAGE)).all()]
    return AlertLists(open_rows[:OPEN_PAGE], len(open_rows) > OPEN_PAGE, done)


def acknowledge(engine: Engine, alert_id: int, *, by: str, note: str, now: datetime) -> str:
    """Acknowledge one alert; returns what happened, for the page."""
    with Session(engine) as session:
        if session.get(DeliveryAlert, alert_id) is None:
            return f"Alert {alert_id} does not exist."
        session.add(AlertAckRow(alert_id=alert_id, acknowledged_at=now, acknowledged_by=by[:200], note=note))
        try:
            session.commit()
        except IntegrityError:
            return f"Alert {alert_id} was already acknowledged."
    return f"Alert {alert_id} acknowledged."
