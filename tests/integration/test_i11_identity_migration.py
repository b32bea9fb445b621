"""Migration 0004: ``identity_claim`` is backfilled from the accepted events (first order holds a
value), and access to a resource another tenant's order last wrote is withdrawn (SQLite and
PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import command

from gateway.store.db import alembic_config
from gateway.store.fhir_tables import FhirResourceAccess, FhirResourceCurrent, FhirResourceVersion
from gateway.store.tables import EventRow, IdentityClaimRow, OrderRow
from tests.conftest import ACME, ACME_COI, NOVA, NOVA_COI, event_body, nova_order_body, order_body

DIN = "A9999211234563"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _event(order: Any, event_id: str, type_: str, data: dict[str, Any], sequence: int) -> dict[str, Any]:
    return {"order_pk": order.id, "manufacturer_id": order.manufacturer_id, "event_id": event_id,
            "type": type_,
            "occurred_at": NOW, "coi": order.coi, "data": data, "body_sha256": "0" * 64, "sequence": sequence,
            "accepted_at": NOW, "late": False, "status_after": "collected"}


def _legacy_product(conn: Any) -> None:
    """One product id written first by acme/site-a, then by nova/site-b (what DIN keying did)."""
    body = orjson.dumps({"resourceType": "BiologicallyDerivedProduct", "id": "legacy"})
    conn.execute(sa.insert(FhirResourceVersion.__table__), [  # type: ignore[attr-defined]
        {"resource_type": "BiologicallyDerivedProduct", "resource_id": "legacy", "version_id": v,
         "last_updated_us": v, "body": body, "site_id": site, "manufacturer_id": mfr, "order_id": oid}
        for v, site, mfr, oid in ((1, "site-a", "acme-bio", "ORD-1"), (2, "site-b", "nova-cell", "NOVA-1"))])
    conn.execute(sa.insert(FhirResourceCurrent.__table__).values(  # type: ignore[attr-defined]
        resource_type="BiologicallyDerivedProduct", resource_id="legacy", version_id=2, last_updated_us=2,
        content_sha256="0" * 64, body=body))
    conn.execute(sa.insert(FhirResourceAccess.__table__), [  # type: ignore[attr-defined]
        {"resource_type": "BiologicallyDerivedProduct", "resource_id": "legacy", "tenant_kind": kind,
         "tenant_id": tid, "last_updated_us": 2}
        for kind, tid in (("site", "site-a"), ("manufacturer", "acme-bio"), ("site", "site-b"),
                          ("manufacturer", "nova-cell"))])


def test_upgrade_backfills_claims_and_withdraws_foreign_access(client, engine):
    assert client.post("/v1/orders", json=order_body("ORD-1"), headers=ACME).status_code == 201
    assert client.post("/v1/orders", json=nova_order_body("NOVA-1"), headers=NOVA).status_code == 201
    # the reads' audit records are appended by the trail's thread up to a second later: on SQLite such a
    # write between the downgrade's first read and its first DDL fails it ("database is locked")
    client.app.state.audit.close()
    config = alembic_config(engine)
    command.downgrade(config, "0003_outbox")
    with engine.begin() as conn:
        assert "identity_claim" not in sa.inspect(conn).get_table_names()
        table = OrderRow.__table__  # type: ignore[attr-defined]
        columns = (table.c.id, table.c.order_id, table.c.manufacturer_id, table.c.coi)  # those of 0003
        orders = {r.order_id: r for r in conn.execute(sa.select(*columns))}
        acme, nova = orders["ORD-1"], orders["NOVA-1"]
        # accepted before this revision: the DIN on acme's order, then on nova's; lot LOT-1 at
        # each manufacturer (lots are per manufacturer: both are claimed)
        conn.execute(sa.insert(EventRow.__table__), [  # type: ignore[attr-defined]
            _event(acme, "A-C", "collection.completed", {"collected_at": "2026-12-01T10:00:00Z", "din": DIN},
                   1),
            _event(nova, "N-C", "collection.completed", {"collected_at": "2026-12-01T11:00:00Z", "din": DIN},
                   1),
            _event(acme, "A-M", "manufacturing.started", {"lot": "LOT-1"}, 2),
            _event(nova, "N-M", "manufacturing.started", {"lot": "LOT-1"}, 2),
            _event(acme, "A-X", "order.confirmed", {"slot_id": "S"}, 3),
        ])
        orders_table = OrderRow.__table__  # type: ignore[attr-defined]
        for order, last in ((acme, 3), (nova, 2)):
            conn.execute(orders_table.update().where(orders_table.c.id == order.id).values(
                last_sequence=last))
        _legacy_product(conn)
    command.upgrade(config, "head")

    with engine.connect() as conn:
        events = {r.event_id: r.id for r in conn.execute(sa.select(EventRow.id, EventRow.event_id))}
        claims = {(r.kind, r.scope, r.value, r.event_pk) for r in conn.execute(sa.select(IdentityClaimRow))}
        access = set(conn.execute(sa.select(FhirResourceAccess.tenant_kind, FhirResourceAccess.tenant_id)
                                  .where(FhirResourceAccess.resource_id == "legacy")).all())
    assert claims == {("din", "", DIN, events["A-C"]),  # the first order holds the DIN
                      ("lot", "acme-bio", "LOT-1", events["A-M"]),
                      ("lot", "nova-cell", "LOT-1", events["N-M"])}
    assert access == {("site", "site-b"), ("manufacturer", "nova-cell")}  # who wrote the current version

    # from now on the DIN is refused on nova-cell's order; downgrade drops the table
    refused = client.post("/v1/orders/NOVA-1/events", headers=NOVA, json=event_body(
        "N-C2", "collection.completed", "2026-12-01T12:00:00Z", {"collected_at": "2026-12-01T11:30:00Z",
                                                                "din": DIN}, coi=NOVA_COI))
    assert refused.status_code == 422 and refused.json()["code"] == "din-in-use"
    assert client.post("/v1/orders/ORD-1/events", headers=ACME, json=event_body(
        "A-C2", "collection.completed", "2026-12-01T12:00:00Z", {"collected_at": "2026-12-01T11:30:00Z",
                                                                "din": DIN}, coi=ACME_COI)).status_code == 201
    command.downgrade(config, "0003_outbox")
    with engine.connect() as conn:
        assert "identity_claim" not in sa.inspect(conn).get_table_names()
    command.upgrade(config, "head")
