"""Milestone alerts and site certifications over HTTP (issue 16; ``docs/alerts.md``).

``GET  /v1/alerts``                          the caller's alerts (manufacturer: its orders and products;
                                             site: its own; admin: all), oldest first, keyset-paged;
                                             filters ``state``, ``kind``, ``order_id``
``POST /v1/alerts/{alert_id}/acknowledge``   ``{note}``: open -> acknowledged (idempotent; 409 once resolved)
``POST /v1/admin/certifications``            record a site's certification for a product (admin)
``GET  /v1/certifications``                  certifications (manufacturer: its products; site: its own)

Scopes (OAuth): ``orders.read`` for the three caller routes (a site holds no ``orders.write`` and may
acknowledge its alerts), ``admin`` for recording a certification.
"""

from __future__ import annotations

import base64
from datetime import date
from typing import Annotated, Any, Literal

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import AwareDatetime, Field, field_validator

from gateway.alerts import certification as certs
from gateway.alerts.store import alert_view, changed_alert
from gateway.alerts.tables import MilestoneAlertRow
from gateway.api.orders import request_context
from gateway.api.problem import InvalidParameter, problem_responses
from gateway.auth import Principal, current_principal, needs, require_admin
from gateway.context import Context
from gateway.errors import Conflict, FieldError, NotFound, ValidationFailed
from gateway.store.db import read_session, run_write, write_session
from mappings.domain import StrictModel
from mappings.milestones import ALERT_KINDS

__all__ = ["router", "AcknowledgeIn", "CertificationIn"]

router = APIRouter(prefix="/v1", tags=["alerts"], responses=problem_responses(400, 401, 403, 404, 409, 422))
PrincipalDep = Annotated[Principal, Depends(current_principal)]
IdQuery = Query(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")
_MAX_PK = 2**31 - 1
NOTE_MAX_CHARS = 1000


class AcknowledgeIn(StrictModel):
    note: Annotated[str, Field(min_length=1, max_length=NOTE_MAX_CHARS)] | None = None


class CertificationIn(StrictModel):
    site_id: Annotated[str, Field(min_length=1, max_length=64)]
    product_code: Annotated[str, Field(min_length=1, max_length=64)]
    status: Literal["certified", "suspended", "withdrawn"]
    valid_until: date
    training_completed_at: AwareDatetime | None = None
    note: Annotated[str, Field(min_length=1, max_length=NOTE_MAX_CHARS)] | None = None

    @field_validator("valid_until")
    @classmethod
    def _plausible(cls, value: date) -> date:
        if not 2000 <= value.year <= 2999:
            raise ValueError("must be a date between 2000-01-01 and 2999-12-31")
        return value


def _encode(pk: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(["alert", pk])).decode("ascii").rstrip("=")


def _decode(cursor: str) -> int:
    try:
        tag, pk = orjson.loads(base64.urlsafe_b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4)))
        if tag != "alert" or type(pk) is not int or not 1 <= pk <= _MAX_PK:
            raise ValueError("not a cursor of ours")
        return pk
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise InvalidParameter(
            "The cursor is not one this API returned.",
            errors=[FieldError("/query/cursor", "not a valid cursor")],
        ) from None


def _visible(principal: Principal) -> list[Any]:
    """Where-clauses limiting alerts to what ``principal`` may see."""
    if principal.is_admin:
        return []
    if principal.role == "manufacturer":
        return [MilestoneAlertRow.manufacturer_id == principal.subject]
    return [MilestoneAlertRow.site_id == principal.subject]


@router.get(
    "/alerts",
    summary="Milestone alerts of the caller's orders, oldest first, keyset-paged",
    dependencies=[needs("orders.read")],
)
def get_alerts(
    request: Request,
    principal: PrincipalDep,
    state: Literal["open", "acknowledged", "resolved"] | None = None,
    kind: Annotated[str | None, Query(max_length=40)] = None,
    order_id: Annotated[str | None, IdQuery] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    if kind is not None and kind not in ALERT_KINDS:
        raise InvalidParameter(
            f"Unknown alert kind {kind[:40]!r}.",
            errors=[FieldError("/query/kind", f"one of {', '.join(ALERT_KINDS)}")],
        )
    where = _visible(principal)
    if state is not None:
        where.append(MilestoneAlertRow.state == state)
    if kind is not None:
        where.append(MilestoneAlertRow.kind == kind)
    if order_id is not None:
        where.append(MilestoneAlertRow.order_id == order_id)
    if cursor is not None:
        where.append(MilestoneAlertRow.id > _decode(cursor))  # type: ignore[operator]
    query = sa.select(MilestoneAlertRow).where(*where).order_by(MilestoneAlertRow.id).limit(limit + 1)  # type: ignore[arg-type]
    with read_session(request_context(request).engine) as session:
        rows = list(session.execute(query).scalars().all())
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [alert_view(r) for r in rows],
        "next_cursor": _encode(rows[-1].id or 0) if more else None,
    }


def _acknowledge(context: Context, principal: Principal, alert_id: str, note: str | None) -> dict[str, Any]:
    now = context.now()
    with write_session(context.engine) as session:
        row = (
            session.execute(
                sa.select(MilestoneAlertRow)
                .where(MilestoneAlertRow.alert_id == alert_id, *_visible(principal))  # type: ignore[arg-type]
                .with_for_update()
            )
            .scalars()
            .first()
        )
        if row is None:
            raise NotFound(f"No alert {alert_id} visible to this client.")
        if row.state == "resolved":
            raise Conflict(f"Alert {alert_id} is already resolved.", code="alert-resolved")
        if row.state == "open":
            row.state, row.acknowledged_at = "acknowledged", now
            row.acknowledged_by = principal.client_id or (
                f"{principal.role}:{principal.subject}" if principal.subject else principal.role
            )
            row.note = note
            session.add(row)
            session.flush()
            changed_alert(session, context, row, now)
        return alert_view(row)


@router.post(
    "/alerts/{alert_id}/acknowledge",
    summary="Acknowledge an alert (with a note)",
    dependencies=[needs("orders.read")],
)
async def acknowledge_alert(
    request: Request,
    principal: PrincipalDep,
    alert_id: Annotated[str, Path(max_length=40, pattern=r"^[0-9a-f\-]{36}$")],
    body: AcknowledgeIn | None = None,
) -> dict[str, Any]:
    context = request_context(request)
    note = body.note if body is not None else None
    return await run_write(context.engine, _acknowledge, context, principal, alert_id, note)


def _record(context: Context, principal: Principal, body: CertificationIn) -> dict[str, Any]:
    settings = context.settings
    errors: list[FieldError] = []
    if settings.site(body.site_id) is None:
        errors.append(FieldError("/site_id", f"unknown site {body.site_id!r}", "unknown-site"))
    owner = settings.product_owner(body.product_code)
    if owner is None:
        errors.append(
            FieldError("/product_code", f"unknown product {body.product_code!r}", "unknown-product")
        )
    if errors:
        raise ValidationFailed("The certification names an unknown site or product.", errors=errors)
    assert owner is not None
    now = context.now()
    with write_session(context.engine) as session:
        cert = certs.record_certification(
            session,
            site_id=body.site_id,
            product_code=body.product_code,
            manufacturer_id=owner,
            status=body.status,
            valid_until=body.valid_until,
            training_completed_at=body.training_completed_at,
            note=body.note,
            by=principal.client_id or "admin",
            now=now,
        )
    return certs.certification_view(cert)


@router.post(
    "/admin/certifications",
    summary="Record a site's certification for a product (admin only)",
    dependencies=[needs("admin")],
)
async def post_certification(
    request: Request, principal: PrincipalDep, body: CertificationIn
) -> dict[str, Any]:
    require_admin(principal)
    context = request_context(request)
    return await run_write(context.engine, _record, context, principal, body)


@router.get("/certifications", summary="Site certifications per product", dependencies=[needs("orders.read")])
def get_certifications(request: Request, principal: PrincipalDep) -> dict[str, Any]:
    context = request_context(request)
    with read_session(context.engine) as session:
        found = certs.effective_certifications(context, session)
    if principal.role == "manufacturer":
        found = [c for c in found if c.manufacturer_id == principal.subject]
    elif principal.role == "site":
        found = [c for c in found if c.site_id == principal.subject]
    return {"items": [certs.certification_view(c) for c in found]}
