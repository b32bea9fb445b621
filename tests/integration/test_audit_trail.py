"""The audit trail (issue 14, item 6) on SQLite and PostgreSQL: one record per call that reads or
writes patient data, hash-chained; tampering by SQL is found by ``audit verify`` naming the record."""

from __future__ import annotations

import threading
from typing import Any

import orjson
import sqlalchemy as sa
from fhir.resources.R4B import get_fhir_model_class
from typer.testing import CliRunner

from adapters.delivery_result import DeliveryOutcome
from gateway.audit import SYSTEM_ACTOR, Actor, AuditEntry, append
from gateway.audit.delivery import delivery_recorder
from gateway.audit.tables import HEAD, RECORDS
from gateway.audit.verify import verify_chain
from gateway.cli.main import app as cli
from gateway.config import DEMO_CONFIG
from gateway.context import load_site_profiles
from gateway.delivery.settings import WorkerSettings
from gateway.delivery.store import DeliveryStore
from gateway.store.db import write_session
from tests.conftest import ACME, ADMIN, SITE_A, SITE_B, event_body, order_body
from tests.integration.test_delivery_support import enqueue_mllp

runner = CliRunner()


def records(engine) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(sa.select(RECORDS).order_by(RECORDS.c.seq)).all()


def flush(client) -> None:
    client.app.state.audit.flush()


def _post_order(client, order_id: str = "ORD-1") -> None:
    assert client.post("/v1/orders", json=order_body(order_id), headers=ACME).status_code == 201


# ------------------------------------------------------------------ writes, in the write's transaction

def test_an_order_post_leaves_one_write_record_with_patient_id_and_no_phi(client, engine) -> None:
    _post_order(client)
    [record] = records(engine)
    assert (record.seq, record.action, record.operation) == (1, "create", "orders.create")
    assert record.outcome == "success"
    assert (record.client_id, record.role) == ("acme-bio demo", "manufacturer:acme-bio")
    assert record.source == "testclient"
    assert orjson.loads(record.entities) == ["order:acme-bio/ORD-1"]
    [patient] = orjson.loads(record.patients)
    assert patient.startswith("Patient/") and len(patient) == len("Patient/") + 36
    text = " ".join(str(v) for v in record)
    for phi in ("MRN-0042", "Zyxwvut", "Quillon", "1971-03-09"):
        assert phi not in text
    # the FHIR Patient the order wrote has exactly that id
    found = client.get("/fhir/Patient", headers=SITE_A).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [patient.removeprefix("Patient/")]
    assert verify_chain(engine).ok


def test_an_event_and_its_retraction_each_leave_a_record(client, engine, clock) -> None:
    _post_order(client)
    at = clock().isoformat()
    event = event_body("EV-1", "order.confirmed", at)
    assert client.post("/v1/orders/ORD-1/events", json=event, headers=ACME).status_code == 201
    retract = client.post("/v1/orders/ORD-1/events/EV-1/retract", json={"reason": "wrong order"},
                          headers=ACME)
    assert retract.status_code == 200, retract.text
    ops = [(r.action, r.operation) for r in records(engine)]
    assert ops == [("create", "orders.create"), ("create", "events.create"), ("update", "events.retract")]
    assert "event:acme-bio/EV-1" in orjson.loads(records(engine)[2].entities)
    assert verify_chain(engine).ok


def test_a_refused_order_leaves_no_record_and_a_replay_a_read(client, engine) -> None:
    _post_order(client)
    conflict = client.post("/v1/orders", json=order_body("ORD-1", priority="urgent"), headers=ACME)
    assert conflict.status_code == 409
    assert [r.operation for r in records(engine)] == ["orders.create"]  # the refusal rolled back: no record
    assert client.post("/v1/orders", json=order_body("ORD-1"), headers=ACME).status_code == 200
    assert [(r.action, r.operation) for r in records(engine)] == [("create", "orders.create"),
                                                                 ("read", "orders.create")]


# ------------------------------------------------------------------ reads, write-behind

def test_a_fhir_poll_with_data_leaves_a_read_record_an_empty_poll_none(client, engine) -> None:
    _post_order(client)
    empty = client.get("/fhir/Task?status=completed", headers=SITE_A)
    assert empty.status_code == 200 and "entry" not in empty.json()
    other_site = client.get("/fhir/Task", headers=SITE_B)
    assert "entry" not in other_site.json()
    flush(client)
    assert [r.operation for r in records(engine)] == ["orders.create"]
    poll = client.get("/fhir/Task", headers=SITE_A).json()
    [task] = poll["entry"]
    flush(client)
    read = records(engine)[-1]
    assert (read.action, read.operation) == ("search", "fhir.search")
    assert (read.client_id, read.role) == ("site-a demo", "site:site-a")
    assert orjson.loads(read.entities) == [f"Task/{task['resource']['id']}"]
    assert orjson.loads(read.patients) == orjson.loads(records(engine)[0].patients)
    assert verify_chain(engine).ok


def test_reads_are_appended_within_a_second_without_a_flush(client, engine) -> None:
    import time

    _post_order(client)
    assert client.get("/v1/orders/ORD-1", headers=ACME).status_code == 200
    deadline = time.monotonic() + 3
    while len(records(engine)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r.operation for r in records(engine)] == ["orders.create", "orders.read"]


def test_reads_waiting_at_shutdown_are_appended(settings, engine, clock) -> None:
    from fastapi.testclient import TestClient

    from gateway.bootstrap import create_app

    app = create_app(settings, engine=engine, now=clock)
    with TestClient(app) as client:
        _post_order(client)
        app.state.audit.flush_s = 3600  # the thread would not flush in this test's time
        client.get("/fhir/Task", headers=SITE_A)
    assert [r.operation for r in records(engine)] == ["orders.create", "fhir.search"]


# ------------------------------------------------------------------ delivery attempts

def test_an_outbox_retry_leaves_a_delivery_record_per_attempt(client, engine, settings) -> None:
    _post_order(client)
    from gateway.context import utc_now

    store = DeliveryStore(engine, WorkerSettings(), "w1", utc_now,
                          on_attempt=delivery_recorder(load_site_profiles(settings)))
    enqueue_mllp(engine, ["M1"])  # a message about ORD-1, as the pipeline queues it
    destination = "site-a/mllp"
    message = store.claim_head(destination)
    assert message is not None
    store.record(message, DeliveryOutcome("retry", detail="connection refused"))
    again = message.model_copy(update={"attempts": 1})
    store.record(again, DeliveryOutcome("delivered", ack_code="AA"))
    order, *deliveries = records(engine)
    assert [(r.action, r.operation, r.outcome, r.source) for r in deliveries] == [
        ("execute", "outbox.deliver", "retry", destination),
        ("execute", "outbox.deliver", "success", destination)]
    assert deliveries[0].patients == order.patients
    assert f"outbox:{message.id}" in orjson.loads(deliveries[0].entities)
    assert verify_chain(engine).ok


# ------------------------------------------------------------------ tampering

def _chain(engine, n: int = 5) -> None:
    actor = Actor("c1", "manufacturer:acme-bio", "10.0.0.1")
    with write_session(engine) as session:
        append(session, [AuditEntry.of(actor, 1_000_000 * i, "read", "orders.read", entities=[f"order:a/{i}"],
                                       patients=[f"Patient/p{i}"]) for i in range(1, n + 1)])


def _sql(engine, statement: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def _cli_verify(engine, monkeypatch, *args: str) -> Any:
    monkeypatch.setenv("CGT_GATEWAY_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    return runner.invoke(cli, ["audit", "verify", "--config", str(DEMO_CONFIG), *args])


def test_an_untouched_chain_verifies(engine, monkeypatch) -> None:
    _chain(engine)
    done = _cli_verify(engine, monkeypatch)
    assert done.exit_code == 0, done.output
    head = records(engine)[-1]
    assert done.output.strip() == f"audit chain intact: 5 records; head 5 {head.sha256}"
    assert _cli_verify(engine, monkeypatch, "--anchor", f"3:{records(engine)[2].sha256}").exit_code == 0


def test_an_updated_field_is_named(engine, monkeypatch) -> None:
    _chain(engine)
    _sql(engine, "UPDATE audit_record SET client_id = 'someone-else' WHERE seq = 3")
    done = _cli_verify(engine, monkeypatch)
    assert done.exit_code == 1
    assert "record 3: changed" in done.output


def test_an_updated_field_with_its_hash_recomputed_is_named(engine) -> None:
    from gateway.audit.records import record_sha256
    from gateway.audit.verify import entry_of_row

    _chain(engine)
    row = records(engine)[1]
    import dataclasses

    forged = dataclasses.replace(entry_of_row(row), outcome="forged")
    _sql(engine, "UPDATE audit_record SET outcome = 'forged', sha256 = :h WHERE seq = 2",
         h=record_sha256(2, forged, row.prev_sha256))
    report = verify_chain(engine)
    assert not report.ok and report.bad_seq == 2 and report.problem.startswith("record 2: changed")


def test_a_deleted_record_is_named(engine, monkeypatch) -> None:
    _chain(engine)
    _sql(engine, "DELETE FROM audit_record WHERE seq = 2")
    done = _cli_verify(engine, monkeypatch)
    assert done.exit_code == 1
    assert "record 2: record 2 was removed" in done.output


def test_a_deleted_last_record_is_named(engine, monkeypatch) -> None:
    _chain(engine)
    _sql(engine, "DELETE FROM audit_record WHERE seq = 5")
    done = _cli_verify(engine, monkeypatch)
    assert done.exit_code == 1 and "record 5: removed" in done.output
    # even with the head row moved back, a head anchored earlier shows it
    anchor = f"5:{verify_anchor_digest(engine)}"
    _sql(engine, "UPDATE audit_head SET seq = 4, sha256 = (SELECT sha256 FROM audit_record WHERE seq = 4)")
    assert verify_chain(engine).ok
    anchored = _cli_verify(engine, monkeypatch, "--anchor", anchor)
    assert anchored.exit_code == 1 and "record 5: removed" in anchored.output


def verify_anchor_digest(engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(sa.select(HEAD.c.sha256)).scalar_one())


def test_two_swapped_records_are_named(engine, monkeypatch) -> None:
    _chain(engine)
    rows = {r.seq: r for r in records(engine)}
    columns = [c for c in RECORDS.c.keys() if c != "seq"]
    with engine.begin() as conn:
        for seq, other in ((2, 4), (4, 2)):
            conn.execute(RECORDS.update().where(RECORDS.c.seq == seq),
                         {c: getattr(rows[other], c) for c in columns})
    done = _cli_verify(engine, monkeypatch)
    assert done.exit_code == 1
    assert "record 2: changed or reordered" in done.output


# ------------------------------------------------------------------ concurrency

def test_concurrent_writers_keep_one_valid_chain(engine) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(10):
                with write_session(engine) as session:
                    append(session, [AuditEntry.of(SYSTEM_ACTOR, i, "execute", "outbox.deliver",
                                                   entities=[f"outbox:{n}-{i}"])])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    report = verify_chain(engine)
    assert report.ok and report.records == 40 and [r.seq for r in records(engine)] == list(range(1, 41))


def test_concurrent_order_posts_keep_one_valid_chain(client, engine) -> None:
    from tests.conftest import isbt_coi

    def post(n: int) -> None:
        body = order_body(f"C-{n}", coi=isbt_coi(n), patient={**order_body()["patient"], "mrn": f"M-{n}"})
        assert client.post("/v1/orders", json=body, headers=ACME).status_code == 201

    threads = [threading.Thread(target=post, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(records(engine)) == 6 and verify_chain(engine).ok


# ------------------------------------------------------------------ GET /fhir/AuditEvent, export

def _valid(resource: dict[str, Any]) -> dict[str, Any]:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return resource


def test_audit_event_search_is_admin_only(client) -> None:
    for headers in (ACME, SITE_A):
        denied = client.get("/fhir/AuditEvent", headers=headers)
        assert denied.status_code == 403
        assert denied.json()["resourceType"] == "OperationOutcome"
        assert denied.json()["issue"][0]["code"] == "forbidden"
    assert client.get("/fhir/AuditEvent").status_code == 401


def test_audit_event_search_by_date_agent_entity_patient_and_paging(client, engine, clock) -> None:
    _post_order(client)
    clock.advance(minutes=5)
    later = clock()
    client.get("/fhir/Task", headers=SITE_A)
    flush(client)
    first, second = records(engine)
    [patient] = orjson.loads(first.patients)

    def ids(query: str) -> list[str]:
        response = client.get(f"/fhir/AuditEvent{query}", headers=ADMIN)
        assert response.status_code == 200, response.text
        bundle = _valid(response.json())
        return [e["resource"]["id"] for e in bundle.get("entry", [])]

    assert ids("") == ["1", "2"]
    assert ids("?agent=site-a%20demo") == ["2"] and ids("?agent=manufacturer:acme-bio") == ["1"]
    assert ids("?entity=order:acme-bio/ORD-1") == ["1"]
    assert ids(f"?patient={patient}") == ["1", "2"] and ids(f"?patient={patient.split('/')[1]}") == ["1", "2"]
    assert ids("?patient=Patient/nobody") == []
    stamp = later.strftime("%Y-%m-%dT%H:%M:%S")
    assert ids(f"?date=ge{stamp}Z") == ["2"] and ids(f"?date=lt{stamp}Z") == ["1"]
    page = client.get("/fhir/AuditEvent?_count=1", headers=ADMIN).json()
    assert [e["resource"]["id"] for e in page["entry"]] == ["1"]
    [next_link] = [link["url"] for link in page["link"] if link["relation"] == "next"]
    page2 = client.get(next_link.removeprefix("http://testserver"), headers=ADMIN).json()
    assert [e["resource"]["id"] for e in page2["entry"]] == ["2"]
    event = page["entry"][0]["resource"]
    assert event["action"] == "C" and event["outcome"] == "0"
    assert event["entity"][0]["what"] == {"reference": patient}
    bad = client.get("/fhir/AuditEvent?name=x", headers=ADMIN)
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/AuditEvent?date=xx2026", headers=ADMIN).status_code == 400
    assert client.get("/fhir/AuditEvent?_count=99999", headers=ADMIN).status_code == 200


def test_export_writes_r4_audit_events_as_ndjson(client, engine, monkeypatch, tmp_path) -> None:
    _post_order(client)
    client.get("/fhir/Task", headers=SITE_A)
    flush(client)
    monkeypatch.setenv("CGT_GATEWAY_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    out = tmp_path / "audit.ndjson"
    done = runner.invoke(cli, ["audit", "export", "--since", "2000-01-01T00:00:00Z", "--out", str(out),
                               "--config", str(DEMO_CONFIG)])
    assert done.exit_code == 0, done.output
    lines = out.read_text().splitlines()
    assert len(lines) == 2
    events = [_valid(orjson.loads(line)) for line in lines]
    assert [e["resourceType"] for e in events] == ["AuditEvent", "AuditEvent"]
    assert events[1]["subtype"][0]["code"] == "search-type" and events[1]["action"] == "E"
    chain = {x["url"]: x for x in events[1]["extension"][0]["extension"]}
    assert chain["prev"]["valueString"] == events[0]["extension"][0]["extension"][2]["valueString"]
    stdout = runner.invoke(cli, ["audit", "export", "--since", "2999-01-01", "--config", str(DEMO_CONFIG)])
    assert stdout.exit_code == 0 and stdout.stdout == ""
    bad = runner.invoke(cli, ["audit", "export", "--since", "yesterday", "--config", str(DEMO_CONFIG)])
    assert bad.exit_code == 2


def test_a_fhir_read_leaves_a_record_a_304_a_head_and_a_404_none(client, engine) -> None:
    _post_order(client)
    task_id = client.get("/fhir/Task", headers=SITE_A).json()["entry"][0]["resource"]["id"]
    flush(client)
    before = len(records(engine))
    read = client.get(f"/fhir/Task/{task_id}", headers=SITE_A)
    assert read.status_code == 200
    assert client.get(f"/fhir/Task/{task_id}", headers={**SITE_A, "If-None-Match": read.headers["ETag"]}
                      ).status_code == 304
    assert client.head(f"/fhir/Task/{task_id}", headers=SITE_A).status_code == 200
    assert client.get(f"/fhir/Task/{task_id}", headers=SITE_B).status_code == 404
    assert client.get("/fhir/CodeSystem", headers=SITE_A).status_code == 200  # shared: no patient data
    flush(client)
    added = records(engine)[before:]
    assert [(r.action, r.operation, orjson.loads(r.entities)) for r in added] == [
        ("read", "fhir.read", [f"Task/{task_id}"])]


def test_an_outbox_message_shown_with_its_payload_leaves_a_record(client, engine) -> None:
    _post_order(client)
    enqueue_mllp(engine, ["M1"])
    with engine.connect() as conn:
        message_id = conn.execute(sa.text("SELECT id FROM outbox_message")).scalar_one()
    assert client.get(f"/v1/admin/outbox/{message_id}", headers=ADMIN).status_code == 200
    flush(client)
    assert len(records(engine)) == 1  # without the payload: no patient data shown
    assert client.get(f"/v1/admin/outbox/{message_id}?payload=true", headers=ADMIN).status_code == 200
    flush(client)
    shown = records(engine)[-1]
    assert (shown.operation, shown.role) == ("outbox.read", "admin")
    assert orjson.loads(shown.entities) == [f"outbox:{message_id}", "order:acme-bio/ORD-1"]


def test_the_chain_head_is_logged_with_ids_and_digest_only(engine, caplog) -> None:
    import logging

    from gateway.audit import AuditTrail

    _chain(engine, 3)
    trail = AuditTrail(engine, head_log_s=0.05, flush_s=0.02)
    with caplog.at_level(logging.INFO, logger="cgt_gateway.audit"):
        trail.start()
        import time

        deadline = time.monotonic() + 5
        logged = lambda: any(r.getMessage() == "audit chain head" for r in caplog.records)  # noqa: E731
        while not logged() and time.monotonic() < deadline:
            time.sleep(0.02)
        trail.close()
    heads = [r for r in caplog.records if r.getMessage() == "audit chain head"]
    assert len(heads) >= 2  # periodically, and at close
    last = records(engine)[-1]
    assert (heads[-1].audit_seq, heads[-1].audit_sha256) == (3, last.sha256)


def test_search_references_are_indexed_after_the_fact_and_again_if_the_mark_is_lost(engine) -> None:
    from gateway.audit.index import index_refs

    _chain(engine, 3)

    def refs() -> list[tuple[str, str, int]]:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT ref, kind, seq FROM audit_ref ORDER BY seq, kind"))
            return [tuple(r) for r in rows]

    assert refs() == []  # the appending transaction wrote only the records
    assert index_refs(engine) == 3
    expected = [(ref, kind, seq) for seq in (1, 2, 3)
                for kind, ref in (("e", f"order:a/{seq}"), ("p", f"Patient/p{seq}"))]
    assert refs() == expected
    assert index_refs(engine) == 0
    _sql(engine, "DELETE FROM audit_index_mark")
    assert index_refs(engine) == 3 and refs() == expected  # re-indexed, nothing doubled
