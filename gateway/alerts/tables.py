"""The tables of milestone alerts and site certifications (issue 16; migration ``0011_alerts``).

``milestone_alert``: one row per alert condition.  ``subject`` is ``order:<order pk>`` or
``certification:<site>/<product>``; ``(subject, kind, condition_key)`` is unique, so the same
condition is raised once however often (and by however many processes) it is evaluated.
``state`` moves ``open`` -> ``acknowledged`` -> ``resolved`` (or ``open`` -> ``resolved``); ``id`` is the
keyset order of ``GET /v1/alerts``.  ``detail`` holds ids, codes, times and temperatures, never
patient data.

``site_certification``: certifications recorded at run time (``POST /v1/admin/certifications``), one
per ``(site_id, product_code)``; it replaces the configuration file's entry for the same pair.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from gateway.store.tables import OrderRow

__all__ = ["MilestoneAlertRow", "SiteCertificationRow", "ALERTS", "CERTIFICATIONS"]

assert OrderRow.__tablename__ == "cgt_order"  # the foreign key below names it


def _ts(**kw: Any) -> Any:
    return Field(sa_type=sa.DateTime(timezone=True), **kw)


def _str(length: int, **kw: Any) -> Any:
    return Field(sa_type=sa.String(length), **kw)


class MilestoneAlertRow(SQLModel, table=True):
    __tablename__ = "milestone_alert"
    __table_args__ = (
        sa.UniqueConstraint("subject", "kind", "condition_key", name="uq_milestone_alert_condition"),
        sa.UniqueConstraint("alert_id", name="uq_milestone_alert_alert_id"),
        sa.Index("ix_milestone_alert_manufacturer", "manufacturer_id", "id"),
        sa.Index("ix_milestone_alert_site", "site_id", "id"),
        sa.Index("ix_milestone_alert_subject_state", "subject", "state"),
    )

    id: int | None = Field(default=None, primary_key=True)
    alert_id: str = _str(40)
    subject: str = _str(200)
    kind: str = _str(32)
    condition_key: str = _str(200)
    state: str = _str(16)
    order_pk: int | None = Field(default=None, sa_type=sa.Integer, foreign_key="cgt_order.id", nullable=True)
    order_id: str | None = _str(64, default=None, nullable=True)
    manufacturer_id: str = _str(64)
    site_id: str = _str(64)
    product_code: str = _str(64)
    detail: dict[str, Any] = Field(sa_type=sa.JSON)
    raised_at: datetime = _ts()
    acknowledged_at: datetime | None = _ts(default=None, nullable=True)
    acknowledged_by: str | None = _str(200, default=None, nullable=True)
    note: str | None = _str(1000, default=None, nullable=True)
    resolved_at: datetime | None = _ts(default=None, nullable=True)


class SiteCertificationRow(SQLModel, table=True):
    __tablename__ = "site_certification"
    __table_args__ = (
        sa.UniqueConstraint("site_id", "product_code", name="uq_site_certification_site_product"),
    )

    id: int | None = Field(default=None, primary_key=True)
    site_id: str = _str(64)
    product_code: str = _str(64)
    manufacturer_id: str = _str(64)
    status: str = _str(16)
    valid_until: date = Field(sa_type=sa.Date)
    training_completed_at: datetime | None = _ts(default=None, nullable=True)
    note: str | None = _str(1000, default=None, nullable=True)
    updated_at: datetime = _ts()
    updated_by: str = _str(200)


ALERTS: sa.Table = MilestoneAlertRow.__table__  # type: ignore[attr-defined]
CERTIFICATIONS: sa.Table = SiteCertificationRow.__table__  # type: ignore[attr-defined]
