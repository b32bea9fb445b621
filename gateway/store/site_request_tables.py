"""The site requests' tables (issue 13): one row per request a site sent, and its transitions.

``site_request`` holds what the site asked (``kind``, ``requested``, ``reason``, ``raw``, who sent it,
when) and never changes it; only the decision columns move (``state``, ``decision_reason``,
``decided_at``, ``decided_by``, ``event_pk``), and each move is also appended to
``site_request_transition`` (from, to, at, by, reason), so the history of a request is never lost.

Uniqueness lives in the database: ``request_id`` (the public id), and ``(site_id, dedupe_sha256)``
(an HL7v2 message's ``MSH-3|MSH-4|MSH-10``, hashed: the same message resent is one request, also
when two copies arrive at once; NULL for FHIR requests, which are never deduplicated this way).
``seq`` is the primary key and the list's keyset order.  ``raw`` (the message or resource as
received) may hold patient data: it is stored, never logged and never listed.

The index ``ix_cgt_order_site_order`` on ``cgt_order (site_id, order_id)`` serves the look-up of an
order among one site's orders (a site names the order by the id the gateway sent it);
``ix_cgt_order_site_order_number`` on ``cgt_order (site_id, site_order_number)`` the same look-up by the
site's own order number (migration ``0012``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from gateway.store.tables import OrderRow

__all__ = ["SiteRequestRow", "SiteRequestTransitionRow", "SITE_REQUESTS", "SITE_REQUEST_TRANSITIONS"]


def _ts(**kw: Any) -> Any:
    return Field(sa_type=sa.DateTime(timezone=True), **kw)


def _str(length: int, **kw: Any) -> Any:
    return Field(sa_type=sa.String(length), **kw)


class SiteRequestRow(SQLModel, table=True):
    """One site request (see :mod:`mappings.site_request` for kinds and states)."""

    __tablename__ = "site_request"
    __table_args__ = (
        sa.UniqueConstraint("request_id", name="uq_site_request_request_id"),
        sa.UniqueConstraint("site_id", "dedupe_sha256", name="uq_site_request_dedupe"),
        sa.Index("ix_site_request_manufacturer_seq", "manufacturer_id", "seq"),
        sa.Index("ix_site_request_site_seq", "site_id", "seq"),
        sa.Index("ix_site_request_order", "order_pk", "seq"),
    )

    seq: int | None = Field(default=None, primary_key=True)
    request_id: str = _str(40)  # sr-<32 hex>
    order_pk: int = Field(sa_type=sa.Integer, foreign_key="cgt_order.id")
    order_id: str = _str(64)
    manufacturer_id: str = _str(64)
    site_id: str = _str(64)
    kind: str = _str(16)
    state: str = _str(24)
    channel: str = _str(8)  # hl7v2 | fhir
    requested: dict[str, Any] = Field(sa_type=sa.JSON)
    reason: str | None = _str(1000, default=None, nullable=True)
    decision_reason: str | None = _str(1000, default=None, nullable=True)
    decided_by: str | None = _str(16, default=None, nullable=True)  # policy | lifecycle | manufacturer
    decision: str | None = _str(8, default=None, nullable=True)  # the manufacturer's: accept | decline
    decision_code: str | None = _str(40, default=None, nullable=True)  # a lifecycle code: terminal-state
    received_at: datetime = _ts()
    decided_at: datetime | None = _ts(default=None, nullable=True)
    sender: str = _str(200)
    raw: str = Field(sa_type=sa.Text)
    dedupe_sha256: str | None = _str(64, default=None, nullable=True)
    control_id: str | None = _str(64, default=None, nullable=True)  # HL7v2 MSH-10
    ack: str | None = Field(default=None, sa_type=sa.Text, nullable=True)  # the stored HL7v2 ACK
    event_pk: int | None = Field(default=None, sa_type=sa.Integer, foreign_key="order_event.id",
                                 nullable=True)  # the lifecycle event it produced


class SiteRequestTransitionRow(SQLModel, table=True):
    """One move of a request's state (append-only): ``by`` is ``gateway`` or ``manufacturer:<id>``."""

    __tablename__ = "site_request_transition"
    __table_args__ = (sa.Index("ix_site_request_transition_request", "request_seq", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    request_seq: int = Field(sa_type=sa.Integer, foreign_key="site_request.seq")
    from_state: str | None = _str(24, default=None, nullable=True)  # None: the request was created
    to_state: str = _str(24)
    at: datetime = _ts()
    by: str = _str(200)
    reason: str | None = _str(1000, default=None, nullable=True)


SITE_REQUESTS: sa.Table = SiteRequestRow.__table__  # type: ignore[attr-defined]
SITE_REQUEST_TRANSITIONS: sa.Table = SiteRequestTransitionRow.__table__  # type: ignore[attr-defined]

_ORDERS: sa.Table = OrderRow.__table__  # type: ignore[attr-defined]
if "ix_cgt_order_site_order" not in {index.name for index in _ORDERS.indexes}:
    sa.Index("ix_cgt_order_site_order", _ORDERS.c.site_id, _ORDERS.c.order_id)
if "ix_cgt_order_site_order_number" not in {index.name for index in _ORDERS.indexes}:
    sa.Index("ix_cgt_order_site_order_number", _ORDERS.c.site_id, _ORDERS.c.site_order_number)
