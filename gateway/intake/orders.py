"""``accept_order``: a new order in one transaction (CoI claimed, the placed event,
its outputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.alerts.certification import check_certified
from gateway.audit import Actor
from gateway.config import ProductConfig, Settings
from gateway.context import Context
from gateway.errors import (
    CoiError,
    Conflict,
    FieldError,
    ValidationFailed,
)
from gateway.intake import pipeline
from gateway.intake.accept import (
    EVENTS,
    ORDERS,
    PATIENT_COIS,
    Refused,
    audit_write,
    canonical_sha256,
    insert_row,
    log,
    order_reference,
    placed_event_id,
    retrying_on_conflict,
    write_safety_log,
)
from gateway.intake.coi import looks_like_another, normalize_product_coi
from gateway.intake.lifecycle import initial_state
from gateway.intake.order_history import (
    HISTORY_CACHE,
    History,
    LockedOrder,
    build_snapshot,
    event_record,
    lock_order,
)
from gateway.intake.plausibility import check_order_times
from gateway.store.db import write_session
from gateway.store.fhir import deferred_writes
from gateway.store.tables import SafetyLogRow, StoredEvent, as_utc
from mappings.domain import EventType
from mappings.orders import OrderIn

__all__ = ["OrderAccepted", "accept_order"]


_FIND_COI_OWNER = sa.select(PATIENT_COIS.c.site_id, PATIENT_COIS.c.mrn).where(
    PATIENT_COIS.c.manufacturer_id == sa.bindparam("m"), PATIENT_COIS.c.coi == sa.bindparam("c"))


@dataclass(frozen=True)
class OrderAccepted:
    order_pk: int
    created: bool  # False: an identical replay of an existing order


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
        claim = {"manufacturer_id": manufacturer_id, "coi": coi, "site_id": order.site_id,
                 "mrn": order.patient.mrn, "created_at": now}
        insert_row(conn, PATIENT_COIS, claim)
    elif (owner.site_id, owner.mrn) != (order.site_id, order.patient.mrn):
        detail = "This Chain of Identity identifier already belongs to another patient."
        raise Refused(
            CoiError(detail, code="coi-in-use",
                     errors=[FieldError("/coi", "already used for another patient")]),
            SafetyLogRow(at=now, code="coi-in-use", manufacturer_id=manufacturer_id, order_id=order.order_id,
                         presented_coi=coi, detail=detail),
        )


def accept_order(context: Context, manufacturer_id: str, order: OrderIn,
                 actor: Actor | None = None) -> OrderAccepted:
    """Create the order (201) or recognise an identical replay (200); 409 ``duplicate-order``,
    422 ``coi-in-use`` / ``invalid-coi`` / unknown site or product.  ``actor``: who calls, for the
    audit record appended in the same transaction (a refusal rolls back and records nothing)."""
    product = _product_for(context.settings, manufacturer_id, order)
    if order.patient.birth_date > (context.now() + timedelta(days=1)).date():  # a day for time zones
        raise ValidationFailed(
            "The patient's birth date is in the future.",
            errors=[FieldError("/patient/birth_date", "must not be in the future (e.g. 1980-04-12)")],
        )
    if looks_like_another(order.patient.mrn):  # the patient's identity at the site, compared exactly
        raise ValidationFailed(
            "The patient's MRN has blanks around it or invisible characters.",
            errors=[FieldError("/patient/mrn", "an MRN may not start or end with blanks nor hold control, "
                                               "format or invisible characters")],
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
                if existing.body_sha256 == body_sha256:  # nothing changes; the stored order is shown
                    audit_write(conn, context, actor, now, "read", "orders.create",
                                manufacturer_id=manufacturer_id, site_id=order.site_id, mrn=order.patient.mrn,
                                entities=[order_reference(manufacturer_id, order.order_id)])
                    return OrderAccepted(existing.pk, created=False), None
                raise Conflict(
                    f"Order {order.order_id} already exists with a different body.",
                    code="duplicate-order",
                    errors=[FieldError("/order_id", "already used for a different order")],
                )
            check_certified(context, conn, manufacturer_id, order.site_id, product.code, now)  # issue 16
            _claim_coi(conn, manufacturer_id, order, coi, now)
            state = initial_state(now)
            status = state.status.value
            order_pk = insert_row(conn, ORDERS, {
                "manufacturer_id": manufacturer_id, "order_id": order.order_id, "site_id": order.site_id,
                "product_code": product.code, "coi": coi, "status": status,
                "state": state.model_dump(mode="json"), "body": body, "body_sha256": body_sha256,
                "last_sequence": 0, "created_at": now, "updated_at": now})
            placed: dict[str, Any] = {
                "order_pk": order_pk, "manufacturer_id": manufacturer_id,
                "event_id": placed_event_id(order.order_id), "type": EventType.order_placed.value,
                "occurred_at": now, "coi": coi, "data": {}, "body_sha256": body_sha256, "sequence": 0,
                "accepted_at": now, "late": False, "status_after": status}
            placed_pk = insert_row(conn, EVENTS, placed)
            locked = LockedOrder(order_pk, manufacturer_id, order.order_id, order.site_id, product.code, coi,
                                 status, {}, body_sha256, 0, as_utc(now))
            record = event_record(StoredEvent(id=placed_pk, **placed))
            history = History(order_pk, manufacturer_id, order.order_id, body_sha256,
                              OrderIn.model_validate(body), (record,))
            snapshot = build_snapshot(context.settings, locked, history, status)
            with deferred_writes(session):  # FHIR versions written after the outbox rows
                pipeline.process_event(session, snapshot, record, context, now)
            log.info(
                "order accepted",
                extra={
                    "manufacturer_id": manufacturer_id,
                    "order_id": order.order_id,
                    "site_id": order.site_id,
                },
            )
            audit_write(conn, context, actor, now, "create", "orders.create", manufacturer_id=manufacturer_id,
                        site_id=order.site_id, mrn=order.patient.mrn,
                        entities=[order_reference(manufacturer_id, order.order_id)])
        return OrderAccepted(order_pk, created=True), history  # committed

    try:
        result, history = retrying_on_conflict(attempt)
    except Refused as refused:
        write_safety_log(context, refused.entry)
        raise refused.error from None
    if history is not None:
        HISTORY_CACHE.put(context.engine, history)
    return result  # type: ignore[no-any-return]
