"""Append one decided event to a locked order, inside the caller's write transaction.

The one code path every lifecycle event takes once it is checked (CoI, plausibility, identity claims
are the caller's): decide it with the pure lifecycle (unless the caller already did), insert the event
row, store the order's new state, and hand the event to :func:`gateway.intake.pipeline.process_event`
(FHIR versions and outbox rows).  Used by manufacturer events (:mod:`gateway.intake.events`) and by
site requests applied by the gateway (:mod:`gateway.inbound`), so both stay consistent: same
lifecycle, same translation, same timeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlmodel import Session

from gateway.alerts.evaluate import evaluate_order_in_transaction
from gateway.config import ProductConfig
from gateway.context import Context
from gateway.intake import pipeline
from gateway.intake.accept import EVENTS, ORDERS
from gateway.intake.lifecycle import Decision, LifecycleState, decide
from gateway.intake.order_history import (
    HISTORY_CACHE,
    History,
    LockedOrder,
    build_snapshot,
    event_record,
    load_history,
)
from gateway.store.prepared_sql import execute, fetch_rows
from gateway.store.tables import StoredEvent, as_utc
from mappings.domain import EventType, StrictModel
from mappings.events import EventRecord
from mappings.snapshot import OrderSnapshot

__all__ = ["Appended", "append_event"]

_INSERT_EVENT = EVENTS.insert().returning(EVENTS.c.id)

_UPDATE_ORDER = ORDERS.update().where(ORDERS.c.id == sa.bindparam("k_pk")).values(
    status=sa.bindparam("k_status", type_=ORDERS.c.status.type),
    state=sa.bindparam("k_state", type_=ORDERS.c.state.type),
    last_sequence=sa.bindparam("k_sequence", type_=ORDERS.c.last_sequence.type),
    updated_at=sa.bindparam("k_updated", type_=ORDERS.c.updated_at.type))


@dataclass(frozen=True)
class Appended:
    """What was written: the event row, its record, the order's history with it, the snapshot
    translated and the lifecycle's decision.  Cache ``history`` only after the commit."""

    row: StoredEvent
    record: EventRecord
    history: History
    snapshot: OrderSnapshot
    decision: Decision


def append_event(session: Session, context: Context, order: LockedOrder, product: ProductConfig, *,
                 event_id: str, event_type: EventType, occurred_at: datetime, typed: StrictModel,
                 data: dict[str, Any], body_sha256: str, now: datetime,
                 source: Literal["manufacturer", "site"] = "manufacturer",
                 decision: Decision | None = None) -> Appended:
    """Decide (raises :class:`gateway.errors.LifecycleError` when refused) and write the event."""
    conn = session.connection()
    if decision is None:
        state = LifecycleState.model_validate(order.state)
        decision = decide(state, event_type, occurred_at, typed, autologous=product.autologous)
    sequence = order.last_sequence + 1
    status = decision.state.status.value
    values: dict[str, Any] = {
        "order_pk": order.pk, "manufacturer_id": order.manufacturer_id, "event_id": event_id,
        "type": event_type.value, "occurred_at": as_utc(occurred_at), "coi": order.coi, "data": data,
        "body_sha256": body_sha256, "sequence": sequence, "accepted_at": now,
        "late": decision.late, "status_after": status}
    if source != "manufacturer":  # else the column's server default (keeps the statement as it was)
        values["source"] = source
    history = load_history(conn, order, HISTORY_CACHE.get(context.engine, order.pk))
    event_pk = int(fetch_rows(conn, _INSERT_EVENT, values)[0][0])
    execute(conn, _UPDATE_ORDER, {"k_pk": order.pk, "k_status": status,
                                 "k_state": decision.state.model_dump(mode="json"),
                                 "k_sequence": sequence, "k_updated": now})
    row = StoredEvent(id=event_pk, **values)
    record = event_record(row)
    history = history.appended(record)
    snapshot = build_snapshot(context.settings, order, history, status)
    pipeline.process_event(session, snapshot, record, context, now)
    evaluate_order_in_transaction(  # issue 16: alerts shown by this event, raised (or resolved) with it
        session, context, order_pk=order.pk, manufacturer_id=order.manufacturer_id, order_id=order.order_id,
        site_id=order.site_id, product_code=order.product_code, status=status, mrn=history.order.patient.mrn,
        events=history.events, now=now)
    return Appended(row, record, history, snapshot, decision)
