"""The FHIR resource store: versions, idempotence, access rows, index, monotonic lastUpdated."""

from __future__ import annotations

import threading
from datetime import timedelta

import orjson
import pytest
import sqlalchemy as sa

from gateway.db import write_session
from gateway.fhir_api.search_params import date_range, format_instant, to_us
from gateway.fhir_store import (
    FhirResourceAccess,
    FhirResourceVersion,
    FhirSearchDate,
    FhirSearchToken,
    Scope,
    publish_shared,
    read_current,
    read_many,
    read_version,
    save_translation,
)
from tests.integration.test_fhir_store_support import T0, order_resources, seed_order

SITE_A = Scope("site", "site-a")
SITE_B = Scope("site", "site-b")
ACME = Scope("manufacturer", "acme-bio")
NOVA = Scope("manufacturer", "nova-cell")


def _task(resources: list[dict]) -> dict:
    return next(r for r in resources if r["resourceType"] == "Task")


def test_first_save_writes_version_1_with_meta(engine):
    written = seed_order(engine, "o1", now=T0)
    assert len(written) == 9
    for resource in written:
        assert resource["meta"] == {"versionId": "1", "lastUpdated": format_instant(to_us(T0))}
    task = _task(written)
    with engine.connect() as conn:
        stored = read_current(conn, SITE_A, "Task", task["id"])
    assert stored is not None and stored.version_id == 1
    assert orjson.loads(stored.body) == task


def test_replay_writes_nothing_and_change_writes_version_2(engine):
    seed_order(engine, "o1", now=T0)
    assert seed_order(engine, "o1", now=T0 + timedelta(seconds=5)) == []
    written = seed_order(engine, "o1", now=T0 + timedelta(seconds=9), task_status="in-progress",
                         business_status="manufacturing")
    # only the Task changed (lastModified is the same): one new version
    assert [(r["resourceType"], r["meta"]["versionId"]) for r in written] == [("Task", "2")]
    task_id = written[0]["id"]
    with engine.connect() as conn:
        v1 = read_version(conn, SITE_A, "Task", task_id, 1)
        v2 = read_current(conn, SITE_A, "Task", task_id)
        count = conn.execute(sa.select(sa.func.count()).select_from(FhirResourceVersion)).scalar_one()
    assert orjson.loads(v1.body)["status"] == "requested"
    assert orjson.loads(v2.body)["status"] == "in-progress" and v2.version_id == 2
    assert v2.last_updated_us == to_us(T0 + timedelta(seconds=9))
    assert count == 10


def test_meta_version_fields_in_input_are_ignored_for_change_detection(engine):
    resources = order_resources("o1")
    with write_session(engine) as session:
        save_translation(session, site_id="site-a", manufacturer_id="acme-bio", order_id="o1",
                         resources=resources, now=T0)
    for r in resources:
        r["meta"] = {"versionId": "77", "lastUpdated": "2020-01-01T00:00:00Z"}
    with write_session(engine) as session:
        assert save_translation(session, site_id="site-a", manufacturer_id="acme-bio", order_id="o1",
                                resources=resources, now=T0 + timedelta(seconds=1)) == []


def test_last_updated_is_strictly_monotonic_even_when_now_goes_backwards(engine):
    first = seed_order(engine, "o1", now=T0)
    second = seed_order(engine, "o2", now=T0 - timedelta(hours=1))  # a slow writer's clock
    lu1 = date_range(first[0]["meta"]["lastUpdated"])[0]
    lu2 = date_range(second[-1]["meta"]["lastUpdated"])[0]
    assert lu2 == lu1 + 1


def test_access_rows_share_resources_between_tenants_and_hide_the_rest(engine):
    a = seed_order(engine, "o1", now=T0)  # site-a / acme-bio
    b = seed_order(engine, "o2", now=T0 + timedelta(seconds=1), site_id="site-b",
                   manufacturer_id="nova-cell")
    mfr_acme = a[0]
    practitioner = a[2]
    assert b[2]["id"] == practitioner["id"]  # same NPI: one shared Practitioner
    # site-b gaining access to the shared Practitioner writes a version so its pollers see it
    assert b[2]["meta"]["versionId"] == "2"
    with engine.connect() as conn:
        assert read_current(conn, SITE_A, "Task", _task(a)["id"]) is not None
        assert read_current(conn, ACME, "Task", _task(a)["id"]) is not None
        assert read_current(conn, SITE_B, "Task", _task(a)["id"]) is None
        assert read_current(conn, NOVA, "Task", _task(a)["id"]) is None
        assert read_current(conn, NOVA, "Organization", mfr_acme["id"]) is None
        assert read_version(conn, SITE_B, "Task", _task(a)["id"], 1) is None
        assert read_current(conn, SITE_B, "Practitioner", practitioner["id"]) is not None
        assert read_current(conn, Scope("all"), "Task", _task(b)["id"]) is not None
        found = read_many(conn, SITE_B, [("Task", _task(a)["id"]), ("Task", _task(b)["id"])])
        assert [s.resource_id for s in found] == [_task(b)["id"]]
        kinds = conn.execute(sa.select(FhirResourceAccess.tenant_kind, FhirResourceAccess.tenant_id).where(
            FhirResourceAccess.resource_id == practitioner["id"])).all()
    assert sorted(kinds) == [("manufacturer", "acme-bio"), ("manufacturer", "nova-cell"),
                             ("site", "site-a"), ("site", "site-b")]


def test_second_order_of_same_tenants_adds_no_version_to_shared_resources(engine):
    seed_order(engine, "o1", now=T0)
    written = seed_order(engine, "o2", now=T0 + timedelta(seconds=1))
    types = sorted(r["resourceType"] for r in written)
    assert "Practitioner" not in types and "Organization" not in types
    assert "Task" in types


def test_search_index_follows_current_version(engine):
    seed_order(engine, "o1", now=T0)
    written = seed_order(engine, "o1", now=T0 + timedelta(seconds=3), task_status="completed",
                         modified=T0 + timedelta(days=2))
    task_id = _task(written)["id"]
    with engine.connect() as conn:
        tokens = conn.execute(sa.select(FhirSearchToken.param, FhirSearchToken.system, FhirSearchToken.value)
                              .where(FhirSearchToken.resource_id == task_id)).all()
        dates = conn.execute(sa.select(FhirSearchDate.param, FhirSearchDate.start_us)
                             .where(FhirSearchDate.resource_id == task_id)).all()
    assert ("status", "http://hl7.org/fhir/task-status", "completed") in tokens
    assert ("status", "http://hl7.org/fhir/task-status", "requested") not in tokens
    assert ("group-identifier", "urn:isbt128:coi", "COIo1") in tokens
    assert dates == [("modified", to_us(T0 + timedelta(days=2)))]


def test_bad_input_is_refused_and_empty_input_writes_nothing(engine):
    with write_session(engine) as session:
        assert save_translation(session, site_id="s", manufacturer_id="m", order_id="o", resources=[],
                                now=T0) == []
        with pytest.raises(ValueError, match="resourceType and an id"):
            save_translation(session, site_id="s", manufacturer_id="m", order_id="o",
                             resources=[{"resourceType": "Task"}], now=T0)
        with pytest.raises(ValueError, match="not a shared resource type"):
            publish_shared(session, resources=[{"resourceType": "Task", "id": "x"}], now=T0)


def test_shared_codesystem_is_public_and_idempotent(engine):
    cs = {"resourceType": "CodeSystem", "id": "cgt-business-status", "status": "active",
          "content": "complete",
          "url": "https://cgt-gateway.example.org/fhir/CodeSystem/cgt-business-status"}
    with write_session(engine) as session:
        assert len(publish_shared(session, resources=[cs], now=T0)) == 1
    with write_session(engine) as session:
        assert publish_shared(session, resources=[cs], now=T0) == []
    with engine.connect() as conn:
        assert read_current(conn, NOVA, "CodeSystem", "cgt-business-status").version_id == 1


def test_concurrent_writers_get_distinct_increasing_stamps_in_commit_order(engine):
    """Many threads write at the same ``now``; every transaction gets its own stamp, and the
    order of stamps equals the order of commits (the clock row serialises writers)."""
    commit_order: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(5):
                order_id = f"w{n}-{i}"
                with write_session(engine) as session:
                    written = save_translation(session, site_id="site-a", manufacturer_id="acme-bio",
                                               order_id=order_id, resources=order_resources(order_id)[3:],
                                               now=T0)
                    stamp = date_range(written[0]["meta"]["lastUpdated"])[0]
                    with lock:  # still holding the clock lock: appends happen in commit order
                        commit_order.append(stamp)
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(commit_order)) == 20
    assert commit_order == sorted(commit_order)


def test_concurrent_orders_sharing_resources_never_collide(engine):
    """Orders of two sites and two manufacturers, written at once, all reference the same
    Practitioner: the clock lock makes the second writer see the first's version, so no duplicate
    key, and the Practitioner ends with one version per tenant that gained access."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def writer(site_id: str, manufacturer_id: str) -> None:
        try:
            barrier.wait()
            for i in range(3):
                order_id = f"{site_id}-{manufacturer_id}-{i}"
                with write_session(engine) as session:
                    save_translation(session, site_id=site_id, manufacturer_id=manufacturer_id,
                                     order_id=order_id, resources=order_resources(
                                         order_id, site_id=site_id, manufacturer_id=manufacturer_id),
                                     now=T0)
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    tenants = [("site-a", "acme-bio"), ("site-b", "acme-bio"), ("site-a", "nova-cell"),
               ("site-b", "nova-cell")]
    threads = [threading.Thread(target=writer, args=tenant) for tenant in tenants]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    practitioner_id = order_resources("any")[2]["id"]
    with engine.connect() as conn:
        versions = conn.execute(sa.select(FhirResourceVersion.version_id).where(
            FhirResourceVersion.resource_id == practitioner_id)).scalars().all()
        for scope in (SITE_A, SITE_B, ACME, NOVA):
            assert read_current(conn, scope, "Practitioner", practitioner_id) is not None
    # created with the first writer's site and manufacturer, then one version per writer that
    # brought a tenant without access yet: 2 or 3 versions depending on who goes second
    assert sorted(versions) == list(range(1, len(versions) + 1)) and len(versions) in (2, 3)
