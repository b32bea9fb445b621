"""Site certification per product (issue 16): which certification holds, recording one, and the
check a new order passes.

A certification comes from the configuration file (``certifications:``) or from
``POST /v1/admin/certifications`` (table ``site_certification``); a recorded one replaces the file's
entry for the same site and product.  With the setting ``require_certification: true`` the gateway accepts a
new order only when its site holds a certification for the product that is ``certified`` and whose
``valid_until`` is on or after the order's day (UTC); else ``422 site-not-certified``.  Existing
orders (and identical replays of them) are never refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlmodel import Session

from gateway.alerts.tables import CERTIFICATIONS, SiteCertificationRow
from gateway.context import Context
from gateway.errors import FieldError, ValidationFailed
from gateway.store.tables import as_utc

__all__ = [
    "Certification",
    "effective_certifications",
    "find_certification",
    "check_certified",
    "record_certification",
    "certification_view",
]


@dataclass(frozen=True)
class Certification:
    site_id: str
    product_code: str
    manufacturer_id: str
    status: str
    valid_until: date
    training_completed_at: datetime | None
    note: str | None
    source: str  # configuration | admin
    updated_at: datetime | None = None
    updated_by: str | None = None

    def valid_on(self, day: date) -> bool:
        return self.status == "certified" and self.valid_until >= day


def _from_row(row: SiteCertificationRow) -> Certification:
    return Certification(
        row.site_id,
        row.product_code,
        row.manufacturer_id,
        row.status,
        row.valid_until,
        as_utc(row.training_completed_at) if row.training_completed_at else None,
        row.note,
        "admin",
        as_utc(row.updated_at),
        row.updated_by,
    )


def _configured(context: Context) -> dict[tuple[str, str], Certification]:
    found: dict[tuple[str, str], Certification] = {}
    for c in context.settings.certifications:
        owner = context.settings.product_owner(c.product_code)
        if owner is None or context.settings.site(c.site_id) is None:
            continue  # names a product or site not (or no longer) configured
        found[(c.site_id, c.product_code)] = Certification(
            c.site_id,
            c.product_code,
            owner,
            c.status,
            c.valid_until,
            c.training_completed_at,
            c.note,
            "configuration",
        )
    return found


def effective_certifications(context: Context, session: Session | None = None) -> list[Certification]:
    """Every certification in force (recorded ones replacing configured ones), by site and product."""
    merged = _configured(context)
    if session is None:
        with Session(context.engine) as own:
            rows = own.execute(sa.select(SiteCertificationRow)).scalars().all()
    else:
        rows = session.execute(sa.select(SiteCertificationRow)).scalars().all()
    for row in rows:
        merged[(row.site_id, row.product_code)] = _from_row(row)
    return [merged[k] for k in sorted(merged)]


_FIND = sa.select(CERTIFICATIONS).where(
    CERTIFICATIONS.c.site_id == sa.bindparam("s"), CERTIFICATIONS.c.product_code == sa.bindparam("p")
)


def find_certification(
    context: Context, conn: Connection, site_id: str, product_code: str
) -> Certification | None:
    row = conn.execute(_FIND, {"s": site_id, "p": product_code}).first()
    if row is not None:
        return _from_row(SiteCertificationRow(**row._asdict()))
    return _configured(context).get((site_id, product_code))


def check_certified(
    context: Context, conn: Connection, manufacturer_id: str, site_id: str, product_code: str, now: datetime
) -> None:
    """Refuse a new order ``422 site-not-certified`` unless the site is certified for the product today."""
    if not context.settings.require_certification:
        return
    day = as_utc(now).date()
    cert = find_certification(context, conn, site_id, product_code)
    if cert is not None and cert.valid_on(day):
        return
    if cert is None:
        why = "has no certification"
    elif cert.status != "certified":
        why = f"has a {cert.status} certification"
    else:
        why = f"has a certification that expired on {cert.valid_until.isoformat()}"
    detail = f"Site {site_id} {why} for product {product_code} on {day.isoformat()}."
    raise ValidationFailed(
        detail,
        code="site-not-certified",
        errors=[
            FieldError(
                "/site_id",
                f"site {site_id!r} is not certified for {product_code!r} on {day.isoformat()}",
                "site-not-certified",
            ),
            FieldError("/product_code", f"{site_id!r} {why} for {product_code!r}", "site-not-certified"),
        ],
    )


def record_certification(
    session: Session,
    *,
    site_id: str,
    product_code: str,
    manufacturer_id: str,
    status: str,
    valid_until: date,
    training_completed_at: datetime | None,
    note: str | None,
    by: str,
    now: datetime,
) -> Certification:
    """Create or replace the recorded certification of ``site_id`` for ``product_code``."""
    row = (
        session.execute(
            sa.select(SiteCertificationRow).where(
                SiteCertificationRow.site_id == site_id,  # type: ignore[arg-type]
                SiteCertificationRow.product_code == product_code,
            )
        )
        .scalars()
        .first()
    )  # type: ignore[arg-type]
    if row is None:
        row = SiteCertificationRow(
            site_id=site_id,
            product_code=product_code,
            manufacturer_id=manufacturer_id,
            status=status,
            valid_until=valid_until,
            training_completed_at=training_completed_at,
            note=note,
            updated_at=now,
            updated_by=by,
        )
    else:
        row.status, row.valid_until, row.training_completed_at = status, valid_until, training_completed_at
        row.note, row.updated_at, row.updated_by, row.manufacturer_id = note, now, by, manufacturer_id
    session.add(row)
    session.flush()
    return _from_row(row)


def certification_view(cert: Certification) -> dict[str, object]:
    def iso(value: datetime | None) -> str | None:
        return None if value is None else as_utc(value).isoformat().replace("+00:00", "Z")

    return {
        "site_id": cert.site_id,
        "product_code": cert.product_code,
        "manufacturer_id": cert.manufacturer_id,
        "status": cert.status,
        "valid_until": cert.valid_until.isoformat(),
        "training_completed_at": iso(cert.training_completed_at),
        "note": cert.note,
        "source": cert.source,
        "updated_at": iso(cert.updated_at),
        "updated_by": cert.updated_by,
    }
