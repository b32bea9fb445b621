"""Chain of Identity claims: a DIN and an autologous lot belong to one order.

Upgrade:

* creates ``identity_claim`` (see :class:`gateway.store.tables.IdentityClaimRow`);
* backfills it from the accepted events, in acceptance order, with the rule intake applies
  (:mod:`gateway.intake.identity_claims`): the first order to record a DIN (any manufacturer) or a lot (per
  manufacturer) holds it; a value another order recorded before this revision stays with the first
  order (the later ones are what this revision refuses from now on).  The configuration is not
  known here, so every product's lots are claimed as if autologous (the default): an allogeneic
  product's lot is then held by its first order, which refuses nothing for allogeneic products
  (intake claims lots of autologous products only);
* withdraws every tenant's access to a resource whose current version another tenant's order wrote
  (before this revision a DIN or a lot shared by two tenants' orders gave both one product id).  The
  versions stay stored; each order's next event writes its products under their new, per-order ids.

Downgrade drops ``identity_claim`` (withdrawn access rows are not restored).

Revision ID: 0004_identity_claims
Revises: 0003_outbox
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004_identity_claims"
down_revision = "0003_outbox"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_BATCH = 1000


def _claims(event_type: str, manufacturer_id: str, data: Any) -> list[tuple[str, str, str]]:
    if not isinstance(data, dict):
        return []
    found = []
    din = data.get("din")
    if event_type == "collection.completed" and isinstance(din, str) and din:
        found.append(("din", "", din))
    lot = data.get("lot")
    if isinstance(lot, str) and lot:
        found.append(("lot", manufacturer_id, lot))
    return found


def _backfill(claims: sa.Table) -> None:
    events = sa.table("order_event", sa.column("id", sa.Integer()), sa.column("order_pk", sa.Integer()),
                      sa.column("manufacturer_id", sa.String()), sa.column("type", sa.String()),
                      sa.column("data", sa.JSON()))
    conn = op.get_bind()
    held: set[tuple[str, str, str]] = set()
    rows: list[dict[str, Any]] = []
    now = datetime.now(UTC)
    query = sa.select(events).where(events.c.type.in_(
        ["collection.completed", "manufacturing.started", "manufacturing.completed"])).order_by(events.c.id)
    for event in conn.execute(query):
        for kind, scope, value in _claims(event.type, event.manufacturer_id, event.data):
            sha = hashlib.sha256(value.encode("utf-8")).hexdigest()
            if (kind, scope, sha) in held:
                continue
            held.add((kind, scope, sha))
            rows.append({"kind": kind, "scope": scope, "value": value[:1000], "value_sha256": sha,
                         "order_pk": event.order_pk, "event_pk": event.id, "claimed_at": now})
    for start in range(0, len(rows), _BATCH):
        conn.execute(claims.insert(), rows[start:start + _BATCH])


def _withdraw_foreign_access() -> None:
    access = sa.table("fhir_resource_access", sa.column("resource_type"), sa.column("resource_id"),
                      sa.column("tenant_kind"), sa.column("tenant_id"))
    current = sa.table("fhir_resource_current", sa.column("resource_type"), sa.column("resource_id"),
                       sa.column("version_id"))
    version = sa.table("fhir_resource_version", sa.column("resource_type"), sa.column("resource_id"),
                       sa.column("version_id"), sa.column("site_id"), sa.column("manufacturer_id"))
    written_by_another = sa.exists().select_from(current.join(version, sa.and_(
        version.c.resource_type == current.c.resource_type, version.c.resource_id == current.c.resource_id,
        version.c.version_id == current.c.version_id))).where(
        current.c.resource_type == access.c.resource_type, current.c.resource_id == access.c.resource_id,
        sa.or_(sa.and_(access.c.tenant_kind == "site",
                       version.c.site_id.is_distinct_from(access.c.tenant_id)),
               sa.and_(access.c.tenant_kind == "manufacturer",
                       version.c.manufacturer_id.is_distinct_from(access.c.tenant_id))))
    op.get_bind().execute(access.delete().where(written_by_another))


def upgrade() -> None:
    claims = op.create_table(
        "identity_claim",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("value", sa.String(1000), nullable=False),
        sa.Column("value_sha256", sa.String(64), nullable=False),
        sa.Column("order_pk", sa.Integer(), sa.ForeignKey("cgt_order.id"), nullable=False),
        sa.Column("event_pk", sa.Integer(), sa.ForeignKey("order_event.id"), nullable=False),
        sa.Column("claimed_at", _TS, nullable=False),
        sa.UniqueConstraint("kind", "scope", "value_sha256", name="uq_identity_claim_value"),
    )
    op.create_index("ix_identity_claim_event", "identity_claim", ["event_pk"])
    _backfill(claims)
    _withdraw_foreign_access()


def downgrade() -> None:
    op.drop_index("ix_identity_claim_event", table_name="identity_claim")
    op.drop_table("identity_claim")
