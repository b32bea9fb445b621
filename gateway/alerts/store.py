"""Raising, resolving and acknowledging alerts, in the caller's transaction.

:func:`sync_alerts` is the one place conditions meet rows: given the conditions that hold now for one
subject (an order, or a site certification), it inserts an ``open`` row for each new condition (the
unique constraint ``(subject, kind, condition_key)`` makes a concurrent or repeated raise a no-op),
and resolves the ``open``/``acknowledged`` rows whose condition no longer holds.  A resolved alert
stays resolved (one alert per condition, never two), so an evaluation whose clock is earlier than an
alert's ``raised_at`` (a host behind the one that raised it) never resolves it: it waits for a pass at or
after that time.

Each raise and resolve, in the same transaction:

* queues ``alert.raised`` / ``alert.resolved`` on the manufacturer's webhook (when it has one; for
  ``release-failed`` only when the site's ``notifications.release_failed`` lists ``webhook``);
* stores the alert's FHIR ``Flag`` (an order's alerts; for ``release-failed`` only when the site's
  preferences list ``subscription``) with the order's tenant access, so the ``order-alert``
  subscription topic and ``GET /fhir/Flag`` see it.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from gateway.alerts.tables import ALERTS, MilestoneAlertRow
from gateway.context import Context
from gateway.delivery.destinations import webhook_destination
from gateway.delivery.outbox import NewMessage, enqueue
from gateway.store.fhir import save_translation
from gateway.store.tables import as_utc
from mappings.fhir.alert import build_alert_flag
from mappings.ids import party_system, resource_id
from mappings.milestones import Condition

__all__ = ["ALERT_NAMESPACE", "Subject", "alert_id_for", "sync_alerts", "alert_view", "changed_alert"]

log = logging.getLogger("cgt_gateway.alerts")

ALERT_NAMESPACE = uuid.UUID("0b6f1f6e-8c3d-5d0e-a7f2-9e4c1d2b3a16")


@dataclass(frozen=True)
class Subject:
    """What alerts are about: an order (``order_pk`` set) or a site's certification for a product."""

    key: str  # order:<pk> | certification:<site>/<product>
    manufacturer_id: str
    site_id: str
    product_code: str
    order_pk: int | None = None
    order_id: str | None = None
    patient_id: str | None = None  # the order's FHIR Patient id (the Flag's subject)

    @staticmethod
    def for_order(
        context: Context,
        *,
        order_pk: int,
        manufacturer_id: str,
        order_id: str,
        site_id: str,
        product_code: str,
        mrn: str,
    ) -> Subject:
        profile = context.profiles.get(site_id)
        patient_id = None
        if profile is not None:
            patient_id = resource_id(
                "Patient", party_system(site_id, manufacturer_id, profile.patient.mrn_system), mrn
            )
        return Subject(
            f"order:{order_pk}", manufacturer_id, site_id, product_code, order_pk, order_id, patient_id
        )

    @staticmethod
    def for_certification(manufacturer_id: str, site_id: str, product_code: str) -> Subject:
        return Subject(f"certification:{site_id}/{product_code}", manufacturer_id, site_id, product_code)


def alert_id_for(subject: Subject, kind: str, key: str) -> str:
    """Deterministic: the same condition of the same subject always has the same alert id."""
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{subject.key}|{kind}|{key}"))


def _insert_ignoring_duplicates(session: Session, values: dict[str, Any]) -> int | None:
    conn = session.connection()
    dialect_insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = dialect_insert(ALERTS).values(**values).on_conflict_do_nothing().returning(ALERTS.c.id)
    return conn.execute(statement).scalar()


# The subject's alerts, as a Core statement on the session's connection: no ORM objects (most events
# change no alert), no autoflush of the caller's pending rows.  A resolve is one UPDATE.
_SUBJECT_ALERTS = sa.select(ALERTS).where(ALERTS.c.subject == sa.bindparam("subject")).order_by(ALERTS.c.id)
_RESOLVE = ALERTS.update().where(ALERTS.c.id == sa.bindparam("pk")).values(
    state="resolved", resolved_at=sa.bindparam("resolved_at", type_=ALERTS.c.resolved_at.type))


def sync_alerts(
    session: Session, context: Context, subject: Subject, conditions: Sequence[Condition], now: datetime
) -> list[MilestoneAlertRow]:
    """Raise the new conditions and resolve the cleared ones; returns the rows that changed."""
    holding = {(c.kind, c.key): c for c in conditions}
    conn = session.connection()
    existing = conn.execute(_SUBJECT_ALERTS, {"subject": subject.key}).all()
    known = {(row.kind, row.condition_key) for row in existing}
    changed: list[MilestoneAlertRow] = []
    for (kind, key), condition in holding.items():
        if (kind, key) in known:
            continue
        values = {
            "alert_id": alert_id_for(subject, kind, key),
            "subject": subject.key,
            "kind": kind,
            "condition_key": key,
            "state": "open",
            "order_pk": subject.order_pk,
            "order_id": subject.order_id,
            "manufacturer_id": subject.manufacturer_id,
            "site_id": subject.site_id,
            "product_code": subject.product_code,
            "detail": condition.detail,
            "raised_at": now,
        }
        pk = _insert_ignoring_duplicates(session, values)
        if pk is None:  # another transaction raised it first
            continue
        row = MilestoneAlertRow(id=pk, **values)
        changed.append(row)
        _notify(session, context, subject, row, "alert.raised", now)
        log.info(
            "alert raised",
            extra={
                "alert_id": row.alert_id,
                "kind": kind,
                "order_id": subject.order_id,
                "site_id": subject.site_id,
            },
        )
    for stored in existing:
        if stored.state == "resolved" or (stored.kind, stored.condition_key) in holding:
            continue
        if as_utc(stored.raised_at) > as_utc(now):
            # Raised by a host whose clock is ahead of this one: by this clock a time-driven condition
            # (overdue, expiring) may not hold *yet*, which is not its clearing.  Resolving it here would
            # close it for good (one alert per condition), so it waits for a pass at or after its raise
            # time, when the conditions computed are no earlier than the ones that raised it.
            continue
        conn.execute(_RESOLVE, {"pk": stored.id, "resolved_at": now})
        resolved: dict[str, Any] = {**stored._asdict(), "state": "resolved", "resolved_at": now}
        row = MilestoneAlertRow(**resolved)
        changed.append(row)
        _notify(session, context, subject, row, "alert.resolved", now)
        log.info(
            "alert resolved",
            extra={
                "alert_id": row.alert_id,
                "kind": row.kind,
                "order_id": subject.order_id,
                "site_id": subject.site_id,
            },
        )
    if changed:
        session.flush()
    return changed


def changed_alert(session: Session, context: Context, row: MilestoneAlertRow, now: datetime) -> None:
    """Store the Flag of ``row`` after a change made elsewhere (acknowledgement)."""
    subject = _subject_of(session, context, row)
    if subject is not None and _wants(context, row, "subscription"):
        _save_flag(session, subject, row, now)


def _subject_of(session: Session, context: Context, row: MilestoneAlertRow) -> Subject | None:
    if row.order_pk is None:
        return None
    body = session.execute(
        sa.text("SELECT body FROM cgt_order WHERE id = :pk"), {"pk": row.order_pk}
    ).scalar()
    if isinstance(body, str):
        body = json.loads(body)
    mrn = (body or {}).get("patient", {}).get("mrn", "")
    return Subject.for_order(
        context,
        order_pk=row.order_pk,
        manufacturer_id=row.manufacturer_id,
        order_id=row.order_id or "",
        site_id=row.site_id,
        product_code=row.product_code,
        mrn=mrn,
    )


def _wants(context: Context, row: MilestoneAlertRow, channel: str) -> bool:
    """Every alert goes to the webhook and the Flag; ``release-failed`` as the site's profile says."""
    if row.kind != "release-failed":
        return True
    profile = context.profiles.get(row.site_id)
    return profile is None or channel in profile.notifications.release_failed


def _save_flag(session: Session, subject: Subject, row: MilestoneAlertRow, now: datetime) -> None:
    if subject.patient_id is None or subject.order_id is None:
        return
    flag = build_alert_flag(
        alert_id=row.alert_id,
        kind=row.kind,
        state=row.state,
        manufacturer_id=subject.manufacturer_id,
        order_id=subject.order_id,
        patient_id=subject.patient_id,
        raised_at=as_utc(row.raised_at),
        resolved_at=as_utc(row.resolved_at) if row.resolved_at else None,
    )
    save_translation(
        session,
        site_id=subject.site_id,
        manufacturer_id=subject.manufacturer_id,
        order_id=subject.order_id,
        resources=[flag],
        now=now,
    )


def _notify(
    session: Session, context: Context, subject: Subject, row: MilestoneAlertRow, kind: str, now: datetime
) -> None:
    if subject.order_pk is not None and _wants(context, row, "subscription"):
        _save_flag(session, subject, row, now)
    manufacturer = context.settings.manufacturer(subject.manufacturer_id)
    if manufacturer is None or manufacturer.webhook is None or not _wants(context, row, "webhook"):
        return
    delivery_id = str(uuid.uuid5(ALERT_NAMESPACE, f"{kind}|{row.alert_id}"))
    body = {"type": kind, "delivery_id": delivery_id, "at": now.isoformat(), **alert_view(row)}
    note = NewMessage(
        destination=webhook_destination(subject.manufacturer_id),
        channel="webhook",
        control_id=delivery_id,
        message_type=kind,
        content_type="application/json",
        payload=json.dumps(body, separators=(",", ":"), sort_keys=True),
    )
    enqueue(
        session,
        [note],
        site_id=subject.site_id,
        manufacturer_id=subject.manufacturer_id,
        order_id=subject.order_id or "",
        event_id=f"alert:{row.alert_id}",
        now=now,
    )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else as_utc(value).isoformat().replace("+00:00", "Z")


def alert_view(row: MilestoneAlertRow) -> dict[str, Any]:
    """The public form of an alert (``GET /v1/alerts`` items, webhook bodies)."""
    return {
        "alert_id": row.alert_id,
        "kind": row.kind,
        "state": row.state,
        "order_id": row.order_id,
        "site_id": row.site_id,
        "manufacturer_id": row.manufacturer_id,
        "product_code": row.product_code,
        "raised_at": _iso(row.raised_at),
        "acknowledged_at": _iso(row.acknowledged_at),
        "acknowledged_by": row.acknowledged_by,
        "note": row.note,
        "resolved_at": _iso(row.resolved_at),
        "detail": row.detail,
    }
