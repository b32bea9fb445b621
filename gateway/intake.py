"""Order and event intake: every accepted write happens in ONE transaction.

``accept_order`` and ``accept_event`` validate what needs no database first (site, product, CoI
format, DIN), then open a write transaction (``BEGIN IMMEDIATE`` on SQLite; the order row locked
with ``SELECT ... FOR UPDATE`` on PostgreSQL), decide, append the event row, update the order's
state, and call ``gateway.pipeline.process_event`` before committing.  Unique constraints settle
races: on ``IntegrityError`` the transaction is retried, and the retry sees the winner's rows and
answers "identical replay" (200) or "conflict" (409).

The statements are SQLAlchemy Core, built once; the order's history for the translation comes from
:mod:`gateway.order_history` (read incrementally, see its cache), which is remembered only once the
transaction has committed.

Refused Chain-of-Identity attempts (``coi-mismatch``, ``coi-in-use``, and ``din-in-use`` /
``lot-in-use`` from :mod:`gateway.identity_claims`) roll back and are written to the safety log in a
transaction of their own.  Nothing here logs patient data.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from gateway import identity_claims, pipeline
from gateway.coi import normalize_din_field, normalize_product_coi
from gateway.config import ProductConfig, Settings
from gateway.context import Context
from gateway.db import write_session
from gateway.errors import CoiError, Conflict, FieldError, NotFound, ValidationFailed
from gateway.lifecycle import LifecycleState, decide, initial_state
from gateway.order_history import (
    EVENT_COLUMNS,
    HISTORY_CACHE,
    History,
    LockedOrder,
    build_snapshot,
    event_record,
    load_history,
    lock_order,
)
from gateway.plausibility import check_event_times, check_order_times
from gateway.prepared_sql import execute, fetch_rows
from gateway.problem import DEFAULT_MAX_ERRORS, validation_errors
from gateway.store import EventRow, OrderRow, PatientCoiRow, SafetyLogRow, StoredEvent, as_utc
from mappings.domain import (
    CollectionCompletedData,
    EventIn,
    EventType,
    ManufacturingCompletedData,
    OrderIn,
    StrictModel,
)

__all__ = [
    "OrderAccepted",
    "EventAccepted",
    "accept_order",
    "accept_event",
    "canonical_sha256",
    "placed_event_id",
    "event_record",
    "build_snapshot",
]

log = logging.getLogger(__name__)
_RETRIES = 5

_O: sa.Table = OrderRow.__table__  # type: ignore[attr-defined]
_E: sa.Table = EventRow.__table__  # type: ignore[attr-defined]
_P: sa.Table = PatientCoiRow.__table__  # type: ignore[attr-defined]

_FIND_COI_OWNER = sa.select(_P.c.site_id, _P.c.mrn).where(
    _P.c.manufacturer_id == sa.bindparam("m"), _P.c.coi == sa.bindparam("c"))
_FIND_EVENT = sa.select(*EVENT_COLUMNS).where(
    _E.c.manufacturer_id == sa.bindparam("m"), _E.c.event_id == sa.bindparam("e"))
_INSERT_EVENT = _E.insert().returning(_E.c.id)
_UPDATE_ORDER = _O.update().where(_O.c.id == sa.bindparam("k_pk")).values(
    status=sa.bindparam("k_status", type_=_O.c.status.type),
    state=sa.bindparam("k_state", type_=_O.c.state.type),
    last_sequence=sa.bindparam("k_sequence", type_=_O.c.last_sequence.type),
    updated_at=sa.bindparam("k_updated", type_=_O.c.updated_at.type))


@dataclass(frozen=True)
class OrderAccepted:
    order_pk: int
    created: bool  # False: an identical replay of an existing order


@dataclass(frozen=True)
class EventAccepted:
    order_pk: int
    event_pk: int
    created: bool  # False: an identical replay of an accepted event
    row: StoredEvent  # the stored event (the API renders it without reading it again)


class _Refused(Exception):
    """Carries a CoI refusal out of the write transaction (which then rolls back)."""

    def __init__(self, error: CoiError, entry: SafetyLogRow) -> None:
        self.error = error
        self.entry = entry


def canonical_sha256(value: Any) -> str:
    """SHA-256 of the canonical JSON form (sorted keys) of ``value``."""
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


def placed_event_id(order_id: str) -> str:
    """The stored ``event_id`` of an order's own ``order.placed`` event."""
    return f"{order_id}:placed"


def _retrying(action: Any) -> Any:
    for _ in range(_RETRIES - 1):
        try:
            return action()
        except IntegrityError:
            log.info("write conflict, retrying")
    return action()


def _write_safety_log(context: Context, entry: SafetyLogRow) -> None:
    with write_session(context.engine) as session:
        session.add(entry)
    log.warning(
        "chain of identity refusal",
        extra={
            "code": entry.code,
            "manufacturer_id": entry.manufacturer_id,
            "order_id": entry.order_id,
            "event_id": entry.event_id,
        },
    )


def _insert(conn: Connection, table: sa.Table, values: dict[str, Any]) -> int:
    """INSERT one row; its new primary key."""
    key = conn.execute(table.insert(), values).inserted_primary_key
    assert key is not None
    return int(key[0])


# --------------------------------------------------------------------------- orders


def _product_for(settings: Settings, manufacturer_id: str, order: OrderIn) -> ProductConfig:
    errors: list[FieldError] = []
    if settings.site(order.site_id) is None:
        errors.append(FieldError("/site_id", f"unknown site {order.site_id!r}", "unknown-site"))
    product = settings.product(manufacturer_id, order.product_code)
    if product is None:
        owner = settings.product_owner(order.product_code)
        reason = (
            f"product {order.product_code!r} is not one of {manufacturer_id}'s products"
            if owner
            else f"unknown product {order.product_code!r}"
        )
        errors.append(FieldError("/product_code", reason, "unknown-product"))
    if errors:
        raise ValidationFailed("The order names an unknown site or product.", errors=errors)
    assert product is not None
    return product


def _claim_coi(conn: Connection, manufacturer_id: str, order: OrderIn, coi: str, now: datetime) -> None:
    """Register ``coi`` for the order's patient, or refuse ``coi-in-use`` if another patient has it."""
    owner = conn.execute(_FIND_COI_OWNER, {"m": manufacturer_id, "c": coi}).first()
    if owner is None:
        _insert(conn, _P, {"manufacturer_id": manufacturer_id, "coi": coi, "site_id": order.site_id,
                           "mrn": order.patient.mrn, "created_at": now})
    elif (owner.site_id, owner.mrn) != (order.site_id, order.patient.mrn):
        detail = "This Chain of Identity identifier already belongs to another patient."
        raise _Refused(
            CoiError(detail, code="coi-in-use",
                     errors=[FieldError("/coi", "already used for another patient")]),
            SafetyLogRow(at=now, code="coi-in-use", manufacturer_id=manufacturer_id, order_id=order.order_id,
                         presented_coi=coi, detail=detail),
        )


def accept_order(context: Context, manufacturer_id: str, order: OrderIn) -> OrderAccepted:
    """Create the order (201) or recognise an identical replay (200); 409 ``duplicate-order``,
    422 ``coi-in-use`` / ``invalid-coi`` / unknown site or product."""
    product = _product_for(context.settings, manufacturer_id, order)
    if order.patient.birth_date > (context.now() + timedelta(days=1)).date():  # a day for time zones
        raise ValidationFailed(
            "The patient's birth date is in the future.",
            errors=[FieldError("/patient/birth_date", "must not be in the future (e.g. 1980-04-12)")],
        )
    check_order_times(context.settings, order, context.now())
    coi = normalize_product_coi(order.coi, product.coi_format, product.coi_pattern)
    body = order.model_dump(mode="json")
    body_sha256 = canonical_sha256(body)

    def attempt() -> tuple[OrderAccepted, History | None]:
        now = context.now()
        with write_session(context.engine) as session:
            conn = session.connection()
            existing = lock_order(conn, manufacturer_id, order.order_id)
            if existing is not None:
                if existing.body_sha256 == body_sha256:
                    return OrderAccepted(existing.pk, created=False), None
                raise Conflict(
                    f"Order {order.order_id} already exists with a different body.",
                    code="duplicate-order",
                    errors=[FieldError("/order_id", "already used for a different order")],
                )
            _claim_coi(conn, manufacturer_id, order, coi, now)
            state = initial_state(now)
            status = state.status.value
            order_pk = _insert(conn, _O, {
                "manufacturer_id": manufacturer_id, "order_id": order.order_id, "site_id": order.site_id,
                "product_code": product.code, "coi": coi, "status": status,
                "state": state.model_dump(mode="json"), "body": body, "body_sha256": body_sha256,
                "last_sequence": 0, "created_at": now, "updated_at": now})
            placed: dict[str, Any] = {
                "order_pk": order_pk, "manufacturer_id": manufacturer_id,
                "event_id": placed_event_id(order.order_id), "type": EventType.order_placed.value,
                "occurred_at": now, "coi": coi, "data": {}, "body_sha256": body_sha256, "sequence": 0,
                "accepted_at": now, "late": False, "status_after": status}
            placed_pk = _insert(conn, _E, placed)
            locked = LockedOrder(order_pk, manufacturer_id, order.order_id, order.site_id, product.code, coi,
                                 status, {}, body_sha256, 0, as_utc(now))
            record = event_record(StoredEvent(id=placed_pk, **placed))
            history = History(order_pk, manufacturer_id, order.order_id, body_sha256,
                              OrderIn.model_validate(body), (record,))
            snapshot = build_snapshot(context.settings, locked, history, status)
            pipeline.process_event(session, snapshot, record, context, now)
            log.info(
                "order accepted",
                extra={
                    "manufacturer_id": manufacturer_id,
                    "order_id": order.order_id,
                    "site_id": order.site_id,
                },
            )
        return OrderAccepted(order_pk, created=True), history  # committed

    try:
        result, history = _retrying(attempt)
    except _Refused as refused:
        _write_safety_log(context, refused.entry)
        raise refused.error from None
    if history is not None:
        HISTORY_CACHE.put(context.engine, history)
    return result  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- events


def _typed_data(event: EventIn) -> tuple[StrictModel, dict[str, Any]]:
    """The event's data validated for its type (errors at ``/data/...``), DIN in normal form."""
    try:
        typed = event.typed_data()
    except ValidationError as exc:
        error = ValidationFailed(f"data is not valid for {event.type.value}.",
                                 errors=validation_errors(exc.errors(), "/data", DEFAULT_MAX_ERRORS))
        error.errors_total = exc.error_count()
        raise error from None
    if isinstance(typed, CollectionCompletedData) and typed.din is not None:
        typed = typed.model_copy(update={"din": normalize_din_field(typed.din, "/data/din")})
    return typed, typed.model_dump(mode="json", exclude_none=True)


def _check_shelf_life(product: ProductConfig, event: EventIn, typed: StrictModel) -> None:
    if isinstance(typed, ManufacturingCompletedData):
        if typed.expires_at <= event.occurred_at:
            raise ValidationFailed(
                "expires_at must be after the product was made (occurred_at).",
                errors=[FieldError("/data/expires_at", "not after occurred_at", "expired-when-made")],
            )
        limit = event.occurred_at + timedelta(days=product.shelf_life_days)
        if typed.expires_at > limit:
            raise ValidationFailed(
                f"expires_at is beyond {product.code}'s shelf life of {product.shelf_life_days} days.",
                errors=[
                    FieldError(
                        "/data/expires_at",
                        f"later than occurred_at + {product.shelf_life_days} days",
                        "beyond-shelf-life",
                    )
                ],
            )


def _replay_of(conn: Connection, order: LockedOrder, event: EventIn,
               body_sha256: str) -> EventAccepted | None:
    """An identical earlier acceptance of ``event`` (200), None if new; 409 if its id was used otherwise."""
    found = fetch_rows(conn, _FIND_EVENT, {"m": order.manufacturer_id, "e": event.event_id})
    if not found:
        return None
    existing = found[0]
    if existing.order_pk == order.pk and existing.body_sha256 == body_sha256:
        row = StoredEvent(**existing._asdict())
        return EventAccepted(order.pk, int(existing.id), created=False, row=row)
    raise Conflict(
        f"Event {event.event_id} was already accepted with a different body.",
        code="duplicate-event",
        errors=[FieldError("/event_id", "already used for a different event")],
    )


def accept_event(context: Context, manufacturer_id: str, order_id: str, event: EventIn) -> EventAccepted:
    """Append the event (201) or recognise an identical replay (200); 404 unknown order,
    409 ``duplicate-event`` and lifecycle refusals, 422 ``coi-mismatch`` and data errors."""
    typed, data = _typed_data(event)
    occurred_at = as_utc(event.occurred_at)
    body_sha256 = canonical_sha256(
        {
            "event_id": event.event_id,
            "type": event.type.value,
            "occurred_at": event.model_dump(mode="json")["occurred_at"],
            "coi": event.coi,
            "data": data,
        }
    )

    def attempt() -> tuple[EventAccepted, History | None]:
        now = context.now()
        engine = context.engine
        with write_session(engine) as session:
            conn = session.connection()
            order = lock_order(conn, manufacturer_id, order_id)
            if order is None:
                raise NotFound(f"No order {order_id} for this manufacturer.")
            product = context.settings.product(manufacturer_id, order.product_code)
            assert product is not None
            _check_coi(event, order, product, now)  # first: a wrong CoI always reaches the safety log
            replay = _replay_of(conn, order, event, body_sha256)
            if replay is not None:
                return replay, None
            claims = identity_claims.check(conn, order, product, event.event_id, event.type.value, data, now)
            check_event_times(context.settings, event, typed, now)
            _check_shelf_life(product, event, typed)
            state = LifecycleState.model_validate(order.state)
            decision = decide(state, event.type, event.occurred_at, typed, autologous=product.autologous)
            sequence = order.last_sequence + 1
            status = decision.state.status.value
            values: dict[str, Any] = {
                "order_pk": order.pk, "manufacturer_id": manufacturer_id, "event_id": event.event_id,
                "type": event.type.value, "occurred_at": occurred_at, "coi": order.coi, "data": data,
                "body_sha256": body_sha256, "sequence": sequence, "accepted_at": now,
                "late": decision.late, "status_after": status}
            history = load_history(conn, order, HISTORY_CACHE.get(engine, order.pk))
            event_pk = int(fetch_rows(conn, _INSERT_EVENT, values)[0][0])
            identity_claims.record(conn, claims, order.pk, event_pk, now)
            execute(conn, _UPDATE_ORDER, {"k_pk": order.pk, "k_status": status,
                                         "k_state": decision.state.model_dump(mode="json"),
                                         "k_sequence": sequence, "k_updated": now})
            row = StoredEvent(id=event_pk, **values)
            record = event_record(row)
            history = history.appended(record)
            snapshot = build_snapshot(context.settings, order, history, status)
            pipeline.process_event(session, snapshot, record, context, now)
            log.info(
                "event accepted",
                extra={
                    "manufacturer_id": manufacturer_id,
                    "order_id": order_id,
                    "event_id": event.event_id,
                    "event_type": event.type.value,
                    "late": decision.late,
                    "status": status,
                },
            )
        return EventAccepted(order.pk, event_pk, created=True, row=row), history  # committed

    try:
        result, history = _retrying(attempt)
    except (_Refused, identity_claims.ClaimRefused) as refused:
        _write_safety_log(context, refused.entry)
        raise refused.error from None
    if history is not None:
        HISTORY_CACHE.put(context.engine, history)
    return result  # type: ignore[no-any-return]


def _check_coi(event: EventIn, order: LockedOrder, product: ProductConfig, now: Any) -> None:
    """The event's CoI, normalised for the product, must equal the order's; else ``coi-mismatch``."""
    try:
        presented = normalize_product_coi(event.coi, product.coi_format, product.coi_pattern)
        reason = "does not match the order's Chain of Identity identifier"
    except CoiError as exc:
        presented = event.coi.strip()[:64]
        reason = f"not a valid CoI for {product.code} ({exc.errors[0].reason if exc.errors else exc.detail})"
    if presented == order.coi:
        return
    detail = "The event's CoI does not match the order's; nothing was changed."
    raise _Refused(
        CoiError(detail, code="coi-mismatch", errors=[FieldError("/coi", reason)]),
        SafetyLogRow(
            at=now,
            code="coi-mismatch",
            manufacturer_id=order.manufacturer_id,
            order_id=order.order_id,
            event_id=event.event_id,
            expected_coi=order.coi,
            presented_coi=presented,
            detail=reason[:500],
        ),
    )
