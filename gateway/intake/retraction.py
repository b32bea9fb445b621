"""Retraction of an event accepted in error (``POST /v1/orders/{order_id}/events/{event_id}/retract``).

An accepted event is never deleted.  Retracting it marks its row entered-in-error
(``retracted_at``, ``retraction_reason``) and recomputes the order as if it had never been accepted:
the remaining (not retracted) events are replayed in acceptance order (``sequence``) through the
same pure lifecycle (:func:`gateway.intake.lifecycle.decide`) from ``initial_state(placed_at)``.  The
replay gives the order's new state and stage time, and the ``late``/``status_after`` of every
remaining event (derived values: stored again where they changed; what was posted never changes).

Refusals: if the replay would refuse any remaining event, nothing changes and the answer is
``409 retraction-conflict`` naming that event (``errors[].pointer`` is its place in the order's
``timeline``, ``/timeline/<sequence>``); the manufacturer retracts the dependent events first,
newest first.  The order-placing event cannot be retracted (``409 retraction-conflict``; to withdraw
an order, post ``order.cancelled``).  Retracting an event already retracted changes nothing (the
first reason is kept).

Everything happens in ONE transaction with the same locking as event intake (``BEGIN IMMEDIATE`` on
SQLite, the order row ``FOR UPDATE`` on PostgreSQL, retried on ``IntegrityError``): the event rows,
the order row (``history_revision`` bumped, see :mod:`gateway.intake.order_history`), the translation's FHIR
versions and outbox rows (:func:`gateway.intake.pipeline.process_retraction`).  The order's history is
cached only after the commit.  Nothing here logs the reason (free text).
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import ConfigDict, Field, field_validator
from sqlalchemy.engine import Connection

from gateway.audit import Actor
from gateway.config import ProductConfig
from gateway.context import Context
from gateway.errors import Conflict, FieldError, LifecycleError, NotFound
from gateway.intake import identity_claims, pipeline
from gateway.intake.accept import (
    audit_write,
    event_reference,
    order_reference,
    retrying_on_conflict,
    stored_mrn,
)
from gateway.intake.lifecycle import LifecycleState, decide, initial_state
from gateway.intake.order_history import (
    EVENT_COLUMNS,
    HISTORY_CACHE,
    History,
    LockedOrder,
    build_snapshot,
    load_history,
    lock_existing_order,
)
from gateway.store.db import write_session
from gateway.store.prepared_sql import execute, fetch_rows
from gateway.store.tables import EventRow, OrderRow, StoredEvent
from mappings.domain import EventType, StrictModel
from mappings.event_data import typed_data
from mappings.events import EventRecord
from mappings.retraction import Retraction

__all__ = ["REASON_MAX_CHARS", "RetractionIn", "RetractionConflict", "Replayed", "Retracted",
           "replay_without", "retract_event"]

log = logging.getLogger(__name__)
REASON_MAX_CHARS = 1000  # the column is String(1000)

_O: sa.Table = OrderRow.__table__  # type: ignore[attr-defined]
_E: sa.Table = EventRow.__table__  # type: ignore[attr-defined]

_FIND_EVENT = sa.select(*EVENT_COLUMNS).where(  # by the unique (manufacturer_id, event_id)
    _E.c.manufacturer_id == sa.bindparam("m"), _E.c.event_id == sa.bindparam("e"),
    _E.c.order_pk == sa.bindparam("pk"))
_MARK_RETRACTED = _E.update().where(_E.c.id == sa.bindparam("k_id")).values(
    retracted_at=sa.bindparam("k_at", type_=_E.c.retracted_at.type),
    retraction_reason=sa.bindparam("k_reason", type_=_E.c.retraction_reason.type))
_RECOMPUTED = _E.update().where(_E.c.order_pk == sa.bindparam("k_pk"),
                                _E.c.sequence == sa.bindparam("k_sequence")).values(
    late=sa.bindparam("k_late", type_=_E.c.late.type),
    status_after=sa.bindparam("k_status", type_=_E.c.status_after.type))
_UPDATE_ORDER = _O.update().where(_O.c.id == sa.bindparam("k_pk")).values(
    status=sa.bindparam("k_status", type_=_O.c.status.type),
    state=sa.bindparam("k_state", type_=_O.c.state.type),
    history_revision=sa.bindparam("k_revision", type_=_O.c.history_revision.type),
    updated_at=sa.bindparam("k_updated", type_=_O.c.updated_at.type))


class RetractionIn(StrictModel):
    """Body of the retract request: why the event was entered in error (free text, stored as sent)."""

    model_config = ConfigDict(strict=True)

    reason: Annotated[str, Field(min_length=1, max_length=REASON_MAX_CHARS)]

    @field_validator("reason")
    @classmethod
    def _readable(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        if any(unicodedata.category(c) == "Cc" and c not in "\t\n\r" for c in value):
            raise ValueError("must not contain control characters (tab and line breaks are allowed)")
        if any(unicodedata.category(c) == "Cf" for c in value):  # bidi overrides, zero-width characters
            raise ValueError("must not contain invisible formatting characters (bidi marks, zero-width)")
        return value


class RetractionConflict(Conflict):
    code = "retraction-conflict"
    title = "The event cannot be retracted"


@dataclass(frozen=True)
class Replayed:
    """The order without the retracted event: its state and its remaining events as replayed."""

    state: LifecycleState
    events: tuple[EventRecord, ...]


@dataclass(frozen=True)
class Retracted:
    order_pk: int
    row: StoredEvent  # the retracted event's row, as stored after the retraction
    status: str  # the order's status
    state: dict[str, Any]
    changed: bool  # False: it had been retracted before (a no-op repeat)


def _conflict(retracted: EventRecord, blocked: EventRecord, why: str) -> RetractionConflict:
    return RetractionConflict(
        f"Retracting {retracted.event_id} would leave {blocked.event_id} ({blocked.type.value}) refused by "
        "the lifecycle; retract the dependent events first, newest first.",
        errors=[FieldError(f"/timeline/{blocked.sequence}",
                           f"event {blocked.event_id} ({blocked.type.value}) would be refused: {why}")])


def replay_without(events: Sequence[EventRecord], retracted: EventRecord, *, autologous: bool) -> Replayed:
    """Replay ``events`` (an order's accepted events in sequence order, ``order.placed`` first, none
    retracted before) without ``retracted``; raises :class:`RetractionConflict` if any is refused.
    ``autologous``: the order's product (the lifecycle's safety gates depend on it)."""
    placed = events[0]
    if placed.type is not EventType.order_placed:
        raise ValueError("an order's history starts with order.placed")
    state = initial_state(placed.occurred_at)
    kept = [placed]
    for record in events[1:]:
        if record.event_id == retracted.event_id:
            continue
        data = typed_data(record)
        if data is None:
            raise _conflict(retracted, record, "its stored data no longer validates")
        try:
            decision = decide(state, record.type, record.occurred_at, data, autologous=autologous)
        except LifecycleError as exc:
            raise _conflict(retracted, record, f"{exc.code}: {exc.detail}") from None
        state = decision.state
        kept.append(record.model_copy(update={"late": decision.late, "status_after": state.status}))
    return Replayed(state, tuple(kept))


_EVENTS_T = EventRow.__table__  # type: ignore[attr-defined]
_REMAINING_EVENTS = (
    sa.select(_EVENTS_T.c.id, _EVENTS_T.c.event_id, _EVENTS_T.c.type, _EVENTS_T.c.data)
    .where(_EVENTS_T.c.order_pk == sa.bindparam("k_pk"), _EVENTS_T.c.retracted_at.is_(None))
    .order_by(_EVENTS_T.c.sequence)
)


def _release_identity_claims(conn: Connection, order: LockedOrder, product: ProductConfig, event_pk: int,
                             now: datetime) -> None:
    """Release the DIN and lot claims the retracted event made, in this transaction, so the value can be
    recorded again (on this order or, once committed, another); the order's remaining events then claim
    again what they still record (a DIN the order recorded twice stays the order's)."""
    if not identity_claims.release_claims_of_event(conn, event_pk):
        return
    remaining = conn.execute(_REMAINING_EVENTS, {"k_pk": order.pk}).all()
    try:
        identity_claims.reclaim(conn, order, product,
                                [(int(r.id), r.event_id, r.type, r.data) for r in remaining], now)
    except identity_claims.ClaimRefused as exc:  # another order took the value meanwhile: refuse
        raise exc.error from None


def retract_event(context: Context, manufacturer_id: str, order_id: str, event_id: str,
                  reason: str, actor: Actor | None = None) -> Retracted:
    """Retract ``event_id`` of the manufacturer's order ``order_id``; see the module docstring.
    404 for an unknown order or event, 409 ``retraction-conflict``.  ``actor``: who calls, for the
    audit record appended in the same transaction (a refusal records nothing)."""

    def attempt() -> tuple[Retracted, History | None]:
        now = context.now()
        engine = context.engine
        with write_session(engine) as session:
            conn = session.connection()
            order = lock_existing_order(conn, manufacturer_id, order_id)
            found = fetch_rows(conn, _FIND_EVENT, {"m": manufacturer_id, "e": event_id, "pk": order.pk})
            if not found:
                raise NotFound(f"No event {event_id} on order {order_id}.")
            row = StoredEvent(**found[0]._asdict())
            entities = [order_reference(manufacturer_id, order_id),
                        event_reference(manufacturer_id, event_id)]
            if row.retracted_at is not None:  # a repeat: nothing changes, the retracted event is shown
                audit_write(conn, context, actor, now, "read", "events.retract",
                            manufacturer_id=manufacturer_id, site_id=order.site_id,
                            mrn=stored_mrn(conn, order.pk), entities=entities)
                return Retracted(order.pk, row, order.status, order.state, changed=False), None
            history = load_history(conn, order, HISTORY_CACHE.get(engine, order.pk))
            target = next(e for e in history.events if e.event_id == event_id)
            if target.type is EventType.order_placed:
                raise RetractionConflict(
                    "order.placed creates the order and cannot be retracted; to withdraw the order, post "
                    "order.cancelled.",
                    errors=[FieldError("/timeline/0", f"event {event_id} (order.placed) is not retractable")])
            product = context.settings.product(manufacturer_id, order.product_code)
            assert product is not None
            replayed = replay_without(history.events, target, autologous=product.autologous)
            status = replayed.state.status.value
            execute(conn, _MARK_RETRACTED, {"k_id": row.id, "k_at": now, "k_reason": reason})
            was = {e.sequence: e for e in history.events}
            for record in replayed.events:
                old = was[record.sequence]
                if (old.late, old.status_after) != (record.late, record.status_after):
                    execute(conn, _RECOMPUTED, {"k_pk": order.pk, "k_sequence": record.sequence,
                                                "k_late": record.late, "k_status": record.status_after.value})
            revision = order.history_revision + 1
            execute(conn, _UPDATE_ORDER, {"k_pk": order.pk, "k_status": status,
                                          "k_state": replayed.state.model_dump(mode="json"),
                                          "k_revision": revision, "k_updated": now})
            _release_identity_claims(conn, order, product, row.id, now)
            remaining = History(order.pk, order.manufacturer_id, order.order_id, order.body_sha256,
                                history.order, replayed.events, revision)
            settings = context.settings
            before = build_snapshot(settings, order, history, order.status)
            after = build_snapshot(settings, order, remaining, status)
            pipeline.process_retraction(session, before, after, target, Retraction(reason, now), context, now)
            log.info("event retracted", extra={
                "manufacturer_id": manufacturer_id, "order_id": order_id, "event_id": event_id,
                "event_type": target.type.value, "status": status})
            stored = StoredEvent(**{**found[0]._asdict(), "retracted_at": now, "retraction_reason": reason})
            result = Retracted(order.pk, stored, status, replayed.state.model_dump(mode="json"), changed=True)
            audit_write(conn, context, actor, now, "update", "events.retract",
                        manufacturer_id=manufacturer_id, site_id=order.site_id,
                        mrn=history.order.patient.mrn, entities=entities)
        return result, remaining  # committed

    result, history = retrying_on_conflict(attempt)
    if history is not None:
        HISTORY_CACHE.put(context.engine, history)
    return result  # type: ignore[no-any-return]

