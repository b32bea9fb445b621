"""The spine's tables (SQLModel): orders, their append-only events, the CoI registry, the safety
log and API clients.

Uniqueness lives in the database, so concurrent duplicates cannot slip through:
``cgt_order (manufacturer_id, order_id)``, ``order_event (manufacturer_id, event_id)`` and
``order_event (order_pk, sequence)``, ``patient_coi (manufacturer_id, coi)``, ``identity_claim (kind,
scope, value_sha256)`` (a DIN, or an autologous lot, belongs to one order:
:mod:`gateway.intake.identity_claims`).
Events are only ever inserted.  Timestamps are stored in UTC; :func:`as_utc` restores the zone SQLite drops.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

__all__ = ["OrderRow", "EventRow", "StoredEvent", "PatientCoiRow", "IdentityClaimRow", "SafetyLogRow",
           "ApiClientRow", "as_utc"]


def as_utc(value: datetime) -> datetime:
    """Stored timestamps are UTC; SQLite returns them naive."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ts(**kw: Any) -> Any:
    return Field(sa_type=sa.DateTime(timezone=True), **kw)


def _str(length: int, **kw: Any) -> Any:
    return Field(sa_type=sa.String(length), **kw)


class OrderRow(SQLModel, table=True):
    """One order; ``state`` is the lifecycle state (``LifecycleState`` JSON), ``body`` the accepted
    ``OrderIn`` and ``body_sha256`` its canonical hash (tells identical replays from conflicts)."""

    __tablename__ = "cgt_order"
    __table_args__ = (
        sa.UniqueConstraint("manufacturer_id", "order_id", name="uq_cgt_order_manufacturer_order"),
        sa.Index("ix_cgt_order_updated", "updated_at", "id"),
        sa.Index("ix_cgt_order_site_updated", "site_id", "updated_at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    manufacturer_id: str = _str(64)
    order_id: str = _str(64)
    site_id: str = _str(64)
    product_code: str = _str(64)
    coi: str = _str(64)  # normal form
    status: str = _str(32)
    state: dict[str, Any] = Field(sa_type=sa.JSON)
    body: dict[str, Any] = Field(sa_type=sa.JSON)
    body_sha256: str = _str(64)
    last_sequence: int = 0
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    # Retractions so far (gateway.intake.order_history).  A server default, not a Python one, so inserts that
    # leave it out still compile to a plain INSERT (gateway.store.prepared_sql refuses Python-side defaults).
    history_revision: int = Field(default=0, sa_column=sa.Column("history_revision", sa.Integer(),
                                                                 nullable=False, server_default="0"))
    # The site's own order number (HL7v2 ORC-1 NA, ORC-3.1), learned from a site request (issue 13).
    site_order_number: str | None = _str(64, default=None, nullable=True)


class EventRow(SQLModel, table=True):
    """An accepted event (never deleted); ``order.placed`` is sequence 0.  What was posted never
    changes; a retraction (``gateway.intake.retraction``) sets ``retracted_at``/``retraction_reason`` and
    the replay of the remaining events may recompute their ``late``/``status_after``."""

    __tablename__ = "order_event"
    __table_args__ = (
        sa.UniqueConstraint("manufacturer_id", "event_id", name="uq_order_event_manufacturer_event"),
        sa.UniqueConstraint("order_pk", "sequence", name="uq_order_event_order_sequence"),
    )

    id: int | None = Field(default=None, primary_key=True)
    order_pk: int = Field(sa_type=sa.Integer, foreign_key="cgt_order.id")
    manufacturer_id: str = _str(64)
    event_id: str = _str(128)
    type: str = _str(40)
    occurred_at: datetime = _ts()
    coi: str = _str(64)  # normal form
    data: dict[str, Any] = Field(sa_type=sa.JSON)
    body_sha256: str = _str(64)
    sequence: int
    accepted_at: datetime = _ts()
    late: bool = False
    status_after: str = _str(32)
    retracted_at: datetime | None = _ts(default=None, nullable=True)  # entered in error
    retraction_reason: str | None = _str(1000, default=None, nullable=True)
    # Who reported it: the manufacturer (its API) or the site (a site request, gateway.inbound).
    source: str = Field(default="manufacturer", sa_column=sa.Column("source", sa.String(16), nullable=False,
                                                                    server_default="manufacturer"))


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An ``order_event`` row as intake wrote or read it, without the ORM (building an
    :class:`EventRow` costs more than the rest of rendering the answer)."""

    id: int
    order_pk: int
    manufacturer_id: str
    event_id: str
    type: str
    occurred_at: datetime
    coi: str
    data: dict[str, Any]
    body_sha256: str
    sequence: int
    accepted_at: datetime
    late: bool
    status_after: str
    retracted_at: datetime | None = None
    retraction_reason: str | None = None
    source: str = "manufacturer"


class PatientCoiRow(SQLModel, table=True):
    """A CoI belongs to exactly one patient (MRN at a site) per manufacturer."""

    __tablename__ = "patient_coi"
    __table_args__ = (sa.UniqueConstraint("manufacturer_id", "coi", name="uq_patient_coi_manufacturer_coi"),)

    id: int | None = Field(default=None, primary_key=True)
    manufacturer_id: str = _str(64)
    coi: str = _str(64)
    site_id: str = _str(64)
    mrn: str = _str(64)
    created_at: datetime = _ts()


class IdentityClaimRow(SQLModel, table=True):
    """A collection's DIN (``kind`` ``din``, ``scope`` ``""``: one order in the whole gateway) or an
    autologous product's lot (``lot``, ``scope`` the manufacturer: lots are manufacturer-assigned)
    held by one order.  ``event_pk`` is the event that made the claim (releasing a retracted event's
    claims deletes its rows).  ``value_sha256`` keys the constraint: a lot may be 1000 characters,
    more than a PostgreSQL btree entry may hold."""

    __tablename__ = "identity_claim"
    __table_args__ = (
        sa.UniqueConstraint("kind", "scope", "value_sha256", name="uq_identity_claim_value"),
        sa.Index("ix_identity_claim_event", "event_pk"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = _str(8)  # din | lot
    scope: str = _str(64)  # "" (din) | manufacturer id (lot)
    value: str = _str(1000)  # the DIN in normal form, the lot as sent
    value_sha256: str = _str(64)
    order_pk: int = Field(sa_type=sa.Integer, foreign_key="cgt_order.id")
    event_pk: int = Field(sa_type=sa.Integer, foreign_key="order_event.id")
    claimed_at: datetime = _ts()


class SafetyLogRow(SQLModel, table=True):
    """A refused Chain-of-Identity attempt. Ids only: no names, birth dates or MRNs."""

    __tablename__ = "safety_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts()
    code: str = _str(40)  # coi-mismatch | coi-in-use | din-in-use | lot-in-use
    manufacturer_id: str = _str(64)
    order_id: str = _str(64)
    event_id: str | None = _str(128, default=None, nullable=True)
    expected_coi: str | None = _str(64, default=None, nullable=True)
    presented_coi: str = _str(64)
    detail: str = _str(500)


class ApiClientRow(SQLModel, table=True):
    """A token created with ``cgt-gateway token create``: only its SHA-256 is kept."""

    __tablename__ = "api_client"
    __table_args__ = (sa.UniqueConstraint("token_sha256", name="uq_api_client_token"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = _str(200)
    role: str = _str(140)
    token_sha256: str = _str(64)
    created_at: datetime = _ts()
    revoked_at: datetime | None = _ts(default=None, nullable=True)
