"""JSON views of stored orders and events (what the API answers), and the order list query."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlmodel import Session, select

from gateway.api.problem import InvalidParameter
from gateway.errors import FieldError
from gateway.store.tables import EventRow, OrderRow, StoredEvent, as_utc

__all__ = [
    "iso",
    "order_summary",
    "order_view",
    "event_view",
    "timeline",
    "encode_cursor",
    "decode_cursor",
    "list_orders",
    "fhir_references",
]


def iso(value: datetime) -> str:
    return as_utc(value).isoformat().replace("+00:00", "Z")


def order_summary(row: OrderRow) -> dict[str, Any]:
    return {
        "order_id": row.order_id,
        "manufacturer_id": row.manufacturer_id,
        "site_id": row.site_id,
        "product_code": row.product_code,
        "coi": row.coi,
        "status": row.status,
        # the site's own order number (ORC-3), once it sent NA (issue 13: gateway.inbound); else null
        "site_order_number": row.site_order_number,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def event_view(row: EventRow | StoredEvent, order_id: str) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "event_id": row.event_id,
        "type": row.type,
        "occurred_at": iso(row.occurred_at),
        "accepted_at": iso(row.accepted_at),
        "sequence": row.sequence,
        "late": row.late,
        "status_after": row.status_after,
        "coi": row.coi,
        "data": row.data,
        # set once the manufacturer retracted the event (entered in error; see gateway.intake.retraction)
        "retracted_at": iso(row.retracted_at) if row.retracted_at is not None else None,
        "retraction_reason": row.retraction_reason,
        "source": row.source,  # manufacturer | site (a site request applied: gateway.inbound)
    }


def timeline(session: Session, row: OrderRow) -> list[dict[str, Any]]:
    events = session.exec(
        select(EventRow).where(EventRow.order_pk == row.id).order_by(EventRow.sequence)
    ).all()  # type: ignore[arg-type]
    return [
        {k: v for k, v in event_view(e, row.order_id).items() if k not in ("order_id", "coi")} for e in events
    ]


def fhir_references(session: Session, row: OrderRow) -> list[dict[str, Any]]:
    """``{reference, resourceType, id, versionId}`` (latest version) of every FHIR resource versioned
    for this order, read from the FHIR store's ``fhir_resource_version`` table."""
    from gateway.store.fhir_tables import FhirResourceVersion as V

    query = (
        sa.select(V.resource_type, V.resource_id, sa.func.max(V.version_id))
        .where(V.manufacturer_id == row.manufacturer_id, V.order_id == row.order_id)
        .group_by(V.resource_type, V.resource_id)
        .order_by(V.resource_type, V.resource_id)
    )
    return [
        {"reference": f"{rtype}/{rid}", "resourceType": rtype, "id": rid, "versionId": str(version)}
        for rtype, rid, version in session.execute(query).all()
    ]


def order_view(session: Session, row: OrderRow) -> dict[str, Any]:
    return {
        **order_summary(row),
        "state": row.state,
        "order": row.body,
        "timeline": timeline(session, row),
        "fhir_resources": fhir_references(session, row),
    }


def encode_cursor(row: OrderRow) -> str:
    raw = orjson.dumps([iso(row.updated_at), row.id])
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


_MAX_PK = 2**63 - 1  # the id column is at most a 64-bit integer


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (updated_at, id) in a cursor of ours; anything else (a forged id of 2^63, a float, a
    non-ASCII or out-of-range time) is ``400 invalid-parameter`` naming ``/query/cursor``."""
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4))
        updated, pk = orjson.loads(raw)
        if (not isinstance(updated, str) or not updated.isascii() or len(updated) > 40
                or type(pk) is not int or not 1 <= pk <= _MAX_PK):
            raise ValueError("not a cursor of ours")
        return as_utc(datetime.fromisoformat(updated)), pk
    except (ValueError, TypeError, OverflowError, orjson.JSONDecodeError):
        raise InvalidParameter(
            "The cursor is not one this API returned.",
            errors=[FieldError("/query/cursor", "not a valid cursor")],
        ) from None


def list_orders(
    session: Session,
    *,
    manufacturer_id: str | None,
    site_id: str | None,
    status: str | None,
    updated_since: datetime | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[OrderRow], str | None]:
    """Orders by (updated_at, id) ascending, keyset-paged; returns the page and the next cursor."""
    query = select(OrderRow)
    if manufacturer_id is not None:
        query = query.where(OrderRow.manufacturer_id == manufacturer_id)
    if site_id is not None:
        query = query.where(OrderRow.site_id == site_id)
    if status is not None:
        query = query.where(OrderRow.status == status)
    if updated_since is not None:
        query = query.where(OrderRow.updated_at >= as_utc(updated_since))
    if cursor is not None:
        after_updated, after_id = decode_cursor(cursor)
        query = query.where(
            sa.or_(
                OrderRow.updated_at > after_updated,
                sa.and_(OrderRow.updated_at == after_updated, OrderRow.id > after_id),
            )
        )
    query = query.order_by(OrderRow.updated_at, OrderRow.id).limit(limit + 1)  # type: ignore[arg-type]
    rows = list(session.exec(query).all())
    if len(rows) > limit:
        return rows[:limit], encode_cursor(rows[limit - 1])
    return rows, None
