"""Evaluating the milestone rules of one order or one certification, and of all of them.

* :func:`evaluate_order_in_transaction`: called by intake in the transaction of every accepted event
  (:mod:`gateway.intake.append`), so a temperature excursion or a failed release is raised, and an
  overdue shipment resolved by its receipt, when the event commits;
* :func:`evaluate_all`: the scheduler's pass (:mod:`gateway.alerts.scheduler`): every order still in
  progress and every certification, each in its own short transaction with the order row locked.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from gateway.alerts import certification
from gateway.alerts.store import Subject, sync_alerts
from gateway.alerts.tables import MilestoneAlertRow
from gateway.context import Context
from gateway.store.db import write_session
from gateway.store.tables import EventRow, OrderRow, as_utc
from mappings.domain import EventType, OrderStatus
from mappings.events import EventRecord
from mappings.milestones import certification_conditions, order_conditions

__all__ = [
    "evaluate_order_in_transaction",
    "evaluate_order",
    "evaluate_certification",
    "evaluate_all",
    "PassResult",
]

_FINISHED = ("infused", "cancelled")


def evaluate_order_in_transaction(
    session: Session,
    context: Context,
    *,
    order_pk: int,
    manufacturer_id: str,
    order_id: str,
    site_id: str,
    product_code: str,
    status: str,
    mrn: str,
    events: Sequence[EventRecord],
    now: datetime,
) -> list[MilestoneAlertRow]:
    """Sync the order's alerts with the conditions that hold for ``events`` at ``now``."""
    product = context.settings.product(manufacturer_id, product_code)
    milestones = product.milestones if product is not None else None
    if milestones is None and not _has_alerts(session, order_pk):
        return []
    subject = Subject.for_order(
        context,
        order_pk=order_pk,
        manufacturer_id=manufacturer_id,
        order_id=order_id,
        site_id=site_id,
        product_code=product_code,
        mrn=mrn,
    )
    conditions = order_conditions(events, status, milestones, now)
    return sync_alerts(session, context, subject, conditions, now)


def _has_alerts(session: Session, order_pk: int) -> bool:
    found = session.execute(
        sa.select(MilestoneAlertRow.id)
        .where(  # type: ignore[call-overload]
            MilestoneAlertRow.subject == f"order:{order_pk}"
        )
        .limit(1)
    ).first()
    return found is not None


def _record(row: EventRow) -> EventRecord:
    return EventRecord(
        event_id=row.event_id,
        type=EventType(row.type),
        occurred_at=as_utc(row.occurred_at),
        coi=row.coi,
        data=row.data,
        sequence=row.sequence,
        accepted_at=as_utc(row.accepted_at),
        late=row.late,
        status_after=OrderStatus(row.status_after),
    )


def evaluate_order(context: Context, order_pk: int, now: datetime) -> list[MilestoneAlertRow]:
    """One order in its own transaction, its row locked (intake holds the same lock for its events)."""
    with write_session(context.engine) as session:
        order = (
            session.execute(
                sa.select(OrderRow)
                .where(OrderRow.id == order_pk)  # type: ignore[arg-type]
                .with_for_update()
            )
            .scalars()
            .first()
        )
        if order is None:
            return []
        rows = (
            session.execute(
                sa.select(EventRow)
                .where(EventRow.order_pk == order_pk, EventRow.retracted_at.is_(None))  # type: ignore[union-attr,arg-type]
                .order_by(EventRow.sequence)
            )
            .scalars()
            .all()
        )
        mrn = str((order.body or {}).get("patient", {}).get("mrn", ""))
        return evaluate_order_in_transaction(
            session,
            context,
            order_pk=order_pk,
            manufacturer_id=order.manufacturer_id,
            order_id=order.order_id,
            site_id=order.site_id,
            product_code=order.product_code,
            status=order.status,
            mrn=mrn,
            events=[_record(r) for r in rows],
            now=now,
        )


class PassResult:
    def __init__(self) -> None:
        self.orders = 0
        self.certifications = 0
        self.changed: list[MilestoneAlertRow] = []


def _orders_to_check(context: Context, after_pk: int, limit: int) -> list[int]:
    """Orders in progress, and finished orders that still have unresolved alerts (to resolve them)."""
    open_subjects = sa.select(MilestoneAlertRow.order_pk).where(  # type: ignore[call-overload]
        MilestoneAlertRow.state != "resolved", MilestoneAlertRow.order_pk.is_not(None)
    )  # type: ignore[union-attr]
    query = (
        sa.select(OrderRow.id)
        .where(OrderRow.id > after_pk)  # type: ignore[arg-type,call-overload]
        .where(
            sa.or_(
                OrderRow.status.not_in(_FINISHED),  # type: ignore[attr-defined]
                OrderRow.id.in_(open_subjects),
            )
        )  # type: ignore[union-attr]
        .order_by(OrderRow.id)
        .limit(limit)
    )  # type: ignore[arg-type]
    with Session(context.engine) as session:
        return [int(pk) for pk in session.execute(query).scalars().all()]


def evaluate_all(context: Context, now: datetime) -> PassResult:
    """One scheduler pass: every order in progress (in batches) and every certification."""
    result = PassResult()
    batch = context.settings.alerts_batch_size
    after = 0
    while True:
        pks = _orders_to_check(context, after, batch)
        for pk in pks:
            result.changed.extend(evaluate_order(context, pk, now))
            result.orders += 1
        if len(pks) < batch:
            break
        after = pks[-1]
    for cert in certification.effective_certifications(context):
        result.changed.extend(evaluate_certification(context, cert, now))
        result.certifications += 1
    return result


def evaluate_certification(
    context: Context, cert: certification.Certification, now: datetime
) -> list[MilestoneAlertRow]:
    """``certification-expiring`` for one certification (its own transaction)."""
    subject = Subject.for_certification(cert.manufacturer_id, cert.site_id, cert.product_code)
    conditions = certification_conditions(cert.status, cert.valid_until, as_utc(now).date())
    with write_session(context.engine) as session:
        return sync_alerts(session, context, subject, conditions, now)
