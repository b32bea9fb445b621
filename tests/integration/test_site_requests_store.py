"""Issue 13: what the site-request service keeps and what it never tells (SQLite and PostgreSQL).

The raw message and the site's free text stay out of the logs; events accepted before migration 0006
read back as the manufacturer's; the dedupe key is unique per site in the database itself.
"""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.exc import IntegrityError

from gateway.store.db import alembic_config
from gateway.store.site_request_tables import SITE_REQUESTS
from gateway.store.tables import EventRow
from tests.conftest import ACME
from tests.integration.site_request_support import advance_to, place, request_rows, send

SECRET_REASON = "Zyxwvut family asked, MRN-0042"
RAW = "MSH|^~\\&|EPIC|SITEA|||20261101||ORM^O01|77|P|2.5.1\rPID|1||MRN-0042||Zyxwvut^Quillon||19710309|F\r"


def test_the_raw_message_and_the_sites_words_never_reach_the_logs(client, clock, caplog):
    place(client, clock)
    advance_to(client, clock, "manufacturing")
    with caplog.at_level(logging.DEBUG):
        waiting = send(client, "cancel", reason=SECRET_REASON, raw=RAW, dedupe_key="EPIC|SITEA|77")
        send(client, "cancel", reason=SECRET_REASON, raw=RAW, dedupe_key="EPIC|SITEA|77")  # duplicate
        send(client, "hold", reason=SECRET_REASON, raw=RAW, coi="CHA999923000001D", coi_required=True)
        response = client.post(f"/v1/site-requests/{waiting.request.request_id}/decision",
                               json={"decision": "decline", "reason": SECRET_REASON}, headers=ACME)
        assert response.status_code == 200
    standard = set(vars(logging.makeLogRecord({})))
    text = "\n".join(f"{r.getMessage()} {({k: v for k, v in vars(r).items() if k not in standard})}"
                     for r in caplog.records)
    assert "site request received" in text and "site request decided" in text
    for secret in ("Zyxwvut", "Quillon", "MRN-0042", "19710309", "family asked"):
        assert secret not in text
    listed = client.get("/v1/site-requests", headers=ACME).json()["items"]
    assert all("raw" not in item for item in listed)
    (row,) = request_rows(client.app.state.context.engine)
    assert row.raw == RAW  # kept for audit


def test_the_dedupe_key_is_unique_per_site_in_the_database(client, clock, engine):
    place(client, clock)
    send(client, "hold", dedupe_key="EPIC|SITEA|1")
    (row,) = request_rows(engine)
    copy = {k: v for k, v in row._asdict().items() if k != "seq"}
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(SITE_REQUESTS.insert().values(**{**copy, "request_id": "sr-" + "0" * 32}))
    with engine.begin() as conn:  # NULL keys (FHIR requests) never collide
        for n in (1, 2):
            conn.execute(SITE_REQUESTS.insert().values(**{**copy, "request_id": f"sr-{n:032d}",
                                                          "dedupe_sha256": None}))


def test_events_accepted_before_the_migration_are_the_manufacturers(client, clock, engine):
    place(client, clock)
    config = alembic_config(engine)
    command.downgrade(config, "0005_event_retraction")
    with engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("order_event")}
        tables = set(sa.inspect(conn).get_table_names())
    assert "source" not in columns and "site_request" not in tables
    command.upgrade(config, "head")
    events = EventRow.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        assert conn.execute(sa.select(events.c.source)).scalars().all() == ["manufacturer"]
    assert client.get("/v1/orders/ORD-1", headers=ACME).json()["timeline"][0]["source"] == "manufacturer"
    assert send(client, "cancel").request.state == "applied"  # the service works on the upgraded schema
