"""The Subscriptions' tables (issue 16; migration ``0010_subscriptions``).

``fhir_subscription``: one row per R4 Subscription (backport IG) a site created: its topic, filters,
channel (endpoint, content, heartbeat, timeout, headers), ``status`` (``requested`` -> ``active`` or
``error``; ``off`` once deleted), ``events_since_start`` (the last event number handed out: it only
goes up, one per triggering change, in the change's own transaction) and the delivery bookkeeping
(``consecutive_failures``, ``next_heartbeat_at``).  ``headers`` may hold the EHR's credentials: never
logged, never shown.

``fhir_subscription_event``: every notification event (``(subscription_id, event_number)`` unique):
the focus resource version it announced, so ``$events`` can backfill what a receiver missed.

They live in the store layer so the delivery sender (:mod:`gateway.delivery.senders`) can read the
endpoint and record the outcome; everything else is :mod:`gateway.subscriptions`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

__all__ = ["SubscriptionRow", "SubscriptionEventRow", "SUBSCRIPTIONS", "SUBSCRIPTION_EVENTS", "LIVE_STATES"]

#: States whose subscriptions get events (a ``requested`` one queues them behind its handshake).
LIVE_STATES = ("requested", "active")


def _ts(**kw: Any) -> Any:
    return Field(sa_type=sa.DateTime(timezone=True), **kw)


class SubscriptionRow(SQLModel, table=True):
    __tablename__ = "fhir_subscription"
    __table_args__ = (
        sa.Index("ix_fhir_subscription_site_status", "site_id", "status"),
        sa.Index("ix_fhir_subscription_heartbeat", "status", "next_heartbeat_at"),
    )

    id: str = Field(sa_type=sa.String(64), primary_key=True)
    site_id: str = Field(sa_type=sa.String(64))
    status: str = Field(sa_type=sa.String(16))
    topic: str = Field(sa_type=sa.String(32))
    filters: list[str] = Field(sa_type=sa.JSON())
    endpoint: str = Field(sa_type=sa.String(2048))
    payload: str = Field(sa_type=sa.String(64))
    content: str = Field(sa_type=sa.String(16))
    heartbeat_s: int | None = Field(default=None, sa_type=sa.Integer())
    timeout_s: int = Field(sa_type=sa.Integer())
    max_count: int | None = Field(default=None, sa_type=sa.Integer())
    headers: list[str] = Field(sa_type=sa.JSON())
    reason: str = Field(sa_type=sa.String(1000))
    error: str | None = Field(default=None, sa_type=sa.String(1000))
    events_since_start: int = Field(default=0, sa_type=sa.BigInteger())
    consecutive_failures: int = Field(default=0, sa_type=sa.Integer())
    version_id: int = Field(default=1, sa_type=sa.Integer())
    created_by: str = Field(sa_type=sa.String(200))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    next_heartbeat_at: datetime | None = _ts(default=None, nullable=True)


class SubscriptionEventRow(SQLModel, table=True):
    __tablename__ = "fhir_subscription_event"

    subscription_id: str = Field(sa_type=sa.String(64), primary_key=True)
    event_number: int = Field(sa_type=sa.BigInteger(), primary_key=True)
    topic: str = Field(sa_type=sa.String(32))
    focus_type: str = Field(sa_type=sa.String(64))
    focus_id: str = Field(sa_type=sa.String(64))
    focus_version: int = Field(sa_type=sa.Integer())
    occurred_at: datetime = _ts()


SUBSCRIPTIONS: sa.Table = SubscriptionRow.__table__  # type: ignore[attr-defined]
SUBSCRIPTION_EVENTS: sa.Table = SubscriptionEventRow.__table__  # type: ignore[attr-defined]
