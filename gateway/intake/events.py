"""``accept_event``: one event in one transaction (CoI, lifecycle, its outputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from gateway.audit import Actor
from gateway.config import ProductConfig
from gateway.context import Context
from gateway.errors import (
    DEFAULT_MAX_ERRORS,
    CoiError,
    Conflict,
    FieldError,
    ValidationFailed,
    validation_errors,
)
from gateway.intake import identity_claims
from gateway.intake.accept import (
    EVENTS,
    Refused,
    audit_write,
    canonical_sha256,
    event_reference,
    log,
    order_reference,
    retrying_on_conflict,
    stored_mrn,
    write_safety_log,
)
from gateway.intake.append import append_event
from gateway.intake.coi import looks_like_another, normalize_din_field, normalize_product_coi
from gateway.intake.order_history import (
    EVENT_COLUMNS,
    HISTORY_CACHE,
    History,
    LockedOrder,
    lock_existing_order,
)
from gateway.intake.plausibility import check_event_times
from gateway.store.db import write_session
from gateway.store.fhir import deferred_writes
from gateway.store.prepared_sql import fetch_rows
from gateway.store.tables import SafetyLogRow, StoredEvent
from mappings.domain import StrictModel
from mappings.events import CollectionCompletedData, EventIn, ManufacturingCompletedData

__all__ = ["EventAccepted", "accept_event"]


_FIND_EVENT = sa.select(*EVENT_COLUMNS).where(
    EVENTS.c.manufacturer_id == sa.bindparam("m"), EVENTS.c.event_id == sa.bindparam("e"))


@dataclass(frozen=True)
class EventAccepted:
    order_pk: int
    event_pk: int
    created: bool  # False: an identical replay of an accepted event
    row: StoredEvent  # the stored event (the API renders it without reading it again)


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
    lot = getattr(typed, "lot", None)
    if isinstance(lot, str) and looks_like_another(lot):
        raise ValidationFailed("data is not valid: the lot has blanks around it or invisible characters.",
                               errors=[FieldError("/data/lot", "a lot may not start or end with blanks nor "
                                                  "hold control, format or invisible characters")])
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


def accept_event(context: Context, manufacturer_id: str, order_id: str, event: EventIn,
                 actor: Actor | None = None) -> EventAccepted:
    """Append the event (201) or recognise an identical replay (200); 404 unknown order,
    409 ``duplicate-event`` and lifecycle refusals, 422 ``coi-mismatch`` and data errors.  ``actor``:
    who calls, for the audit record appended in the same transaction (a refusal records nothing)."""
    typed, data = _typed_data(event)
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
            order = lock_existing_order(conn, manufacturer_id, order_id)
            product = context.settings.product(manufacturer_id, order.product_code)
            assert product is not None
            _check_coi(event, order, product, now)  # first: a wrong CoI always reaches the safety log
            replay = _replay_of(conn, order, event, body_sha256)
            entities = [order_reference(manufacturer_id, order_id),
                        event_reference(manufacturer_id, event.event_id)]
            if replay is not None:  # nothing changes; the stored event is shown
                audit_write(conn, context, actor, now, "read", "events.create",
                            manufacturer_id=manufacturer_id, site_id=order.site_id,
                            mrn=stored_mrn(conn, order.pk), entities=entities)
                return replay, None
            claims = identity_claims.check(conn, order, product, event.event_id, event.type.value, data, now)
            check_event_times(context.settings, event, typed, now)
            _check_shelf_life(product, event, typed)
            with deferred_writes(session):  # FHIR versions written last, before the audit append
                appended = append_event(session, context, order, product, event_id=event.event_id,
                                        event_type=event.type, occurred_at=event.occurred_at, typed=typed,
                                        data=data, body_sha256=body_sha256, now=now)
                identity_claims.record(conn, claims, order.pk, appended.row.id, now)
            row, history, decision = appended.row, appended.history, appended.decision
            status = decision.state.status.value
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
            audit_write(conn, context, actor, now, "create", "events.create", manufacturer_id=manufacturer_id,
                        site_id=order.site_id, mrn=history.order.patient.mrn, entities=entities)
        return EventAccepted(order.pk, row.id, created=True, row=row), history  # committed

    try:
        result, history = retrying_on_conflict(attempt)
    except (Refused, identity_claims.ClaimRefused) as refused:
        write_safety_log(context, refused.entry)
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
    raise Refused(
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
