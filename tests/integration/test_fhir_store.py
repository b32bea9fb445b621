"""The FHIR resource store: versions, idempotence, access rows, index, monotonic lastUpdated."""

from __future__ import annotations

import threading
from datetime import timedelta

import orjson
import pytest
import sqlalchemy as sa

from gateway.store.db import write_session
from gateway.store.fhir import CrossTenantWrite, deferred_writes, publish_shared, save_translation
from gateway.store.fhir_read import Scope, read_current, read_many, read_version
from gateway.store.fhir_tables import FhirResourceAccess, FhirResourceVersion, FhirSearchDate, FhirSearchToken
from gateway.store.search_params import date_range, format_instant, index_values, to_us
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


def test_access_rows_hide_other_tenants_resources(engine):
    a = seed_order(engine, "o1", now=T0)  # site-a / acme-bio
    b = seed_order(engine, "o2", now=T0 + timedelta(seconds=1), site_id="site-b",
                   manufacturer_id="nova-cell")
    mfr_acme = a[0]
    practitioner = a[2]
    assert b[2]["id"] != practitioner["id"]  # same NPI, other site and manufacturer: another resource
    with engine.connect() as conn:
        assert read_current(conn, SITE_A, "Task", _task(a)["id"]) is not None
        assert read_current(conn, ACME, "Task", _task(a)["id"]) is not None
        assert read_current(conn, SITE_B, "Task", _task(a)["id"]) is None
        assert read_current(conn, NOVA, "Task", _task(a)["id"]) is None
        assert read_current(conn, NOVA, "Organization", mfr_acme["id"]) is None
        assert read_version(conn, SITE_B, "Task", _task(a)["id"], 1) is None
        assert read_current(conn, SITE_B, "Practitioner", practitioner["id"]) is None
        assert read_current(conn, Scope("all"), "Task", _task(b)["id"]) is not None
        found = read_many(conn, SITE_B, [("Task", _task(a)["id"]), ("Task", _task(b)["id"])])
        assert [s.resource_id for s in found] == [_task(b)["id"]]
        kinds = conn.execute(sa.select(FhirResourceAccess.tenant_kind, FhirResourceAccess.tenant_id).where(
            FhirResourceAccess.resource_id == practitioner["id"])).all()
    assert sorted(kinds) == [("manufacturer", "acme-bio"), ("site", "site-a")]


@pytest.mark.parametrize(("site_id", "manufacturer_id"), [("site-b", "acme-bio"), ("site-a", "nova-cell"),
                                                          ("site-b", "nova-cell")])
def test_a_write_to_another_tenants_resource_is_refused_and_stores_nothing(engine, site_id, manufacturer_id):
    """Ids are scoped so that no two tenants share one; should a translation ever produce such an
    id, the store refuses the whole write rather than add a version another tenant would read."""
    a = seed_order(engine, "o1", now=T0)
    mine = order_resources("o9", site_id=site_id, manufacturer_id=manufacturer_id)
    shared = {**a[2], "name": [{"family": "Intruder"}]}  # acme/site-a's Practitioner
    with engine.connect() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(FhirResourceVersion)).scalar_one()
    with pytest.raises(CrossTenantWrite) as refused:
        with write_session(engine) as session:
            save_translation(session, site_id=site_id, manufacturer_id=manufacturer_id, order_id="o9",
                             resources=[*mine, shared], now=T0 + timedelta(seconds=1))
    assert refused.value.code == "tenant-conflict" and refused.value.status == 409
    with engine.connect() as conn:
        after = conn.execute(sa.select(sa.func.count()).select_from(FhirResourceVersion)).scalar_one()
        current = read_current(conn, SITE_A, "Practitioner", a[2]["id"])
    assert after == before
    assert current is not None and orjson.loads(current.body) == a[2]


def test_vread_and_history_check_each_version_not_only_the_resource(engine):
    """A resource stored before ids were scoped may hold versions two tenants' orders wrote (the
    store then granted both): each reader sees only the versions its own orders wrote."""
    from gateway.fhir_api import query
    from gateway.store.fhir_tables import FhirResourceCurrent

    a = seed_order(engine, "o1", now=T0)
    product = next(r for r in a if r["resourceType"] == "BiologicallyDerivedProduct")
    key = ("BiologicallyDerivedProduct", product["id"])
    with write_session(engine) as session:  # what the old store did when site-b's order wrote it
        conn = session.connection()
        body = orjson.dumps({**product, "meta": {"versionId": "2"}, "status": "unavailable"})
        conn.execute(sa.insert(FhirResourceVersion), [{
            "resource_type": key[0], "resource_id": key[1], "version_id": 2, "last_updated_us": to_us(T0) + 5,
            "body": body, "site_id": "site-b", "manufacturer_id": "nova-cell", "order_id": "o2"}])
        conn.execute(sa.update(FhirResourceCurrent).where(FhirResourceCurrent.resource_id == key[1]).values(
            version_id=2, body=body))
        conn.execute(sa.insert(FhirResourceAccess), [
            {"resource_type": key[0], "resource_id": key[1], "tenant_kind": kind, "tenant_id": tid,
             "last_updated_us": to_us(T0) + 5}
            for kind, tid in (("site", "site-b"), ("manufacturer", "nova-cell"))])
    with engine.connect() as conn:
        for scope, own, other in ((SITE_A, 1, 2), (ACME, 1, 2), (SITE_B, 2, 1), (NOVA, 2, 1)):
            assert read_version(conn, scope, *key, own) is not None, scope
            assert read_version(conn, scope, *key, other) is None, scope
            for resource_id in (key[1], None):  # instance and type history
                versions, _ = query.history_page(conn, scope, key[0], resource_id, since_us=None, count=50,
                                                 before=None)
                assert [v.version_id for v in versions] == [own], scope
        every, _ = query.history_page(conn, Scope("all"), key[0], key[1], since_us=None, count=50,
                                      before=None)
        assert [v.version_id for v in every] == [2, 1]


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
    """Orders of two sites and two manufacturers, written at once; the orders of each site and
    manufacturer share their parties (Organizations, Practitioner): the clock lock makes a writer
    see the first's version, so no duplicate key, each tenant's Practitioner has one version and no
    tenant can see another's."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def writer(site_id: str, manufacturer_id: str, n: int) -> None:
        try:
            barrier.wait()
            for i in range(3):
                order_id = f"{site_id}-{manufacturer_id}-{n}-{i}"
                with write_session(engine) as session:
                    save_translation(session, site_id=site_id, manufacturer_id=manufacturer_id,
                                     order_id=order_id, resources=order_resources(
                                         order_id, site_id=site_id, manufacturer_id=manufacturer_id),
                                     now=T0)
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    tenants = [("site-a", "acme-bio"), ("site-b", "acme-bio"), ("site-a", "nova-cell"),
               ("site-b", "nova-cell")]
    threads = [threading.Thread(target=writer, args=(*tenant, n)) for tenant in tenants for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    scopes = {("site-a", "acme-bio"): (SITE_A, ACME), ("site-b", "acme-bio"): (SITE_B, ACME),
              ("site-a", "nova-cell"): (SITE_A, NOVA), ("site-b", "nova-cell"): (SITE_B, NOVA)}
    with engine.connect() as conn:
        for tenant in tenants:
            practitioner_id = order_resources("any", site_id=tenant[0], manufacturer_id=tenant[1])[2]["id"]
            versions = conn.execute(sa.select(FhirResourceVersion.version_id).where(
                FhirResourceVersion.resource_id == practitioner_id)).scalars().all()
            assert versions == [1], tenant
            for scope in (SITE_A, SITE_B, ACME, NOVA):
                visible = read_current(conn, scope, "Practitioner", practitioner_id) is not None
                assert visible == (scope in scopes[tenant]), (tenant, scope)


def _index_rows(engine, resource_id: str) -> tuple[set, set]:
    with engine.connect() as conn:
        tokens = conn.execute(sa.select(FhirSearchToken.param, FhirSearchToken.system, FhirSearchToken.value)
                              .where(FhirSearchToken.resource_id == resource_id)).all()
        dates = conn.execute(sa.select(FhirSearchDate.param, FhirSearchDate.start_us, FhirSearchDate.end_us)
                             .where(FhirSearchDate.resource_id == resource_id)).all()
    return {tuple(t) for t in tokens}, {tuple(d) for d in dates}


def test_an_updated_resources_index_equals_the_index_of_its_current_version(engine):
    """Only changed index rows are written: after several updates the rows are exactly those of the
    current version (none stale, none missing, no duplicate)."""
    seed_order(engine, "o1", now=T0)
    steps = [("in-progress", "manufacturing", T0 + timedelta(days=1)),
             ("in-progress", "shipped", T0 + timedelta(days=1)),  # the date row is kept as it was
             ("completed", "infused", T0 + timedelta(days=3))]
    for n, (status, business, modified) in enumerate(steps, start=1):
        written = seed_order(engine, "o1", now=T0 + timedelta(seconds=n), task_status=status,
                             business_status=business, modified=modified)
        task = _task(written)
        token_values, date_values = index_values(task)
        assert _index_rows(engine, task["id"]) == ({(p, s[:255], v[:255]) for p, s, v in token_values},
                                                   set(date_values))


def test_deferred_writes_are_written_when_the_block_ends_as_the_calls_would_have_written_them(engine):
    first, second = order_resources("o1"), order_resources("o2")
    with write_session(engine) as session:
        with deferred_writes(session):
            assert save_translation(session, site_id="site-a", manufacturer_id="acme-bio", order_id="o1",
                                    resources=first, now=T0) == []
            # queued, not written: not even this transaction sees it yet
            assert read_current(session.connection(), SITE_A, "Task", _task(first)["id"]) is None
            save_translation(session, site_id="site-a", manufacturer_id="acme-bio", order_id="o2",
                             resources=second, now=T0)
        inside = read_current(session.connection(), SITE_A, "Task", _task(second)["id"])
        assert inside is not None and inside.version_id == 1  # written when the block ended
    with engine.connect() as conn:
        v1 = read_current(conn, SITE_A, "Task", _task(first)["id"])
        v2 = read_current(conn, SITE_A, "Task", _task(second)["id"])
    # one stamp each, in call order, as two save_translation calls give
    assert v1 is not None and v2 is not None and v1.last_updated_us < v2.last_updated_us


def test_deferred_writes_are_dropped_when_the_block_raises(engine):
    with pytest.raises(RuntimeError), write_session(engine) as session:
        with deferred_writes(session):
            save_translation(session, site_id="site-a", manufacturer_id="acme-bio", order_id="o1",
                             resources=order_resources("o1"), now=T0)
            raise RuntimeError("refused")
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(FhirResourceVersion)).scalar_one() == 0
