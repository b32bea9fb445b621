"""The poll's fast path: search statements built once per shape and run on the DB-API cursor give the
same rows as SQLAlchemy would; driver errors still surface as SQLAlchemy errors (OperationOutcome);
configured tokens come from a table per Settings, stored tokens from the database on every request,
so a revoked token is refused on the very next request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from gateway.auth import create_token, principal_for_token
from gateway.config import hash_token, load_settings
from gateway.fhir_api import query
from gateway.fhir_api.params import parse_search
from gateway.store.fhir_read import Scope
from gateway.store.prepared_sql import compiled_for, fetch_all
from gateway.store.search_params import format_instant, to_us
from tests.conftest import ADMIN, SITE_A
from tests.integration.test_fhir_api import ok, outcome
from tests.integration.test_fhir_store_support import T0, seed_order


@pytest.fixture
def seeded(engine):
    for n in range(6):
        seed_order(engine, f"o{n}", now=T0 + timedelta(minutes=n),
                   site_id="site-a" if n % 2 == 0 else "site-b",
                   manufacturer_id="acme-bio" if n % 2 == 0 else "nova-cell",
                   task_status="completed" if n % 3 == 0 else "requested")
    return engine


QUERIES = [
    [("_lastUpdated", f"gt{format_instant(to_us(T0))}"), ("_count", "2")],
    [("_lastUpdated", f"ge{format_instant(to_us(T0))},lt2026-12"), ("_sort", "-_lastUpdated")],
    [("status", "completed,requested"), ("_count", "1")],
    [("status", "http://hl7.org/fhir/task-status|completed")],
    [("modified", "ge2026-11-01"), ("_count", "3")],
    [("_id", "nope,also-nope")],
    [],
]
SCOPES = [Scope("all"), Scope("site", "site-a"), Scope("manufacturer", "nova-cell")]


def _plain(row):
    return row[0], int(row[1]), int(row[2]), bytes(row[3])


def _sqlalchemy_rows(conn, statement, binds):
    return [tuple(row) for row in conn.execute(statement, binds)]


@pytest.mark.parametrize("items", QUERIES)
def test_the_cursor_path_returns_what_sqlalchemy_returns(seeded, items):
    for scope in SCOPES:
        q = parse_search("Task", items, lenient=False)
        shape, binds = query._shape_and_binds(scope, q)
        binds["limit"] = q.count + 1
        statement = query._page_statement(shape, q.descending, False)
        with seeded.connect() as conn:
            # every search statement, ``_id`` lists too (bound slots, no expanding IN), runs on the cursor
            assert compiled_for(conn.dialect, statement, tuple(sorted(binds))) is not None
            fast = [_plain(r) for r in fetch_all(conn, statement, binds)]
            slow = [_plain(r) for r in _sqlalchemy_rows(conn, statement, binds)]
            assert fast == slow
            counted = fetch_all(conn, query._count_statement(shape), binds)[0][0]
            assert counted == len(_sqlalchemy_rows(conn, query._base(shape)[0], binds))
    # the tenant filter holds on the fast path: each site sees its own three orders' Tasks
    q = parse_search("Task", [], lenient=False)
    with seeded.connect() as conn:
        site_a = {s.resource_id for s in query.search_page(conn, Scope("site", "site-a"), q, None)[0]}
        site_b = {s.resource_id for s in query.search_page(conn, Scope("site", "site-b"), q, None)[0]}
        every = {s.resource_id for s in query.search_page(conn, Scope("all"), q, None)[0]}
    assert len(site_a) == len(site_b) == 3 and site_a.isdisjoint(site_b) and site_a | site_b == every


def test_paging_on_the_cursor_path_walks_every_task_once(seeded):
    q = parse_search("Task", [("_count", "2")], lenient=False)
    seen, after = [], None
    with seeded.connect() as conn:
        while True:
            page, after = query.search_page(conn, Scope("all"), q, after)
            seen += [s.resource_id for s in page]
            if after is None:
                break
        everything = conn.execute(sa.text("SELECT COUNT(*) FROM fhir_resource_current "
                                          "WHERE resource_type = 'Task'")).scalar()
    assert len(seen) == len(set(seen)) == everything == 6


def test_one_statement_per_shape_whatever_the_values(seeded):
    shapes = set()
    for minute in range(3):
        q = parse_search("Task", [("_lastUpdated", f"gt{format_instant(to_us(T0) + minute * 60_000_000)}")],
                         lenient=False)
        shape, _ = query._shape_and_binds(Scope("site", "site-a"), q)
        shapes.add(id(query._page_statement(shape, False, False)))
    assert len(shapes) == 1
    # an ``_id`` list has bound slots rounded up to a power of two (no expanding IN): it runs on the
    # bare cursor, and 3 or 4 ids share one statement
    statements = set()
    for ids in ("a,b,c", "a,b,c,d", "d,c,b,a"):
        q = parse_search("Task", [("_id", ids)], lenient=False)
        shape, binds = query._shape_and_binds(Scope("all"), q)
        statement = query._page_statement(shape, False, False)
        statements.add(id(statement))
        binds["limit"] = 2
        assert compiled_for(seeded.dialect, statement, tuple(sorted(binds))) is not None
    assert len(statements) == 1


def test_a_driver_error_on_the_cursor_path_is_a_sqlalchemy_error(seeded):
    q = parse_search("Task", [("_lastUpdated", "gt2026-01-01")], lenient=False)
    shape, binds = query._shape_and_binds(Scope("site", "site-a"), q)
    binds["limit"] = 10
    with seeded.begin() as conn:
        conn.execute(sa.text("DROP TABLE fhir_resource_access"))
    with seeded.connect() as conn, pytest.raises(sa.exc.DBAPIError) as raised:
        fetch_all(conn, query._page_statement(shape, False, False), binds)
    assert isinstance(raised.value, sa.exc.OperationalError | sa.exc.ProgrammingError)


def test_a_poll_with_the_store_broken_is_an_operation_outcome(client, engine):
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE fhir_resource_access"))
    response = client.get("/fhir/Task", params={"_lastUpdated": "gt2026-01-01"}, headers=SITE_A)
    status, code = (503, "transient") if response.status_code == 503 else (500, "exception")
    assert "fhir_resource_access" not in outcome(response, status, code)


def test_an_empty_poll_is_an_empty_searchset(client, seeded):
    bundle = ok(client.get("/fhir/Task", params={"_lastUpdated": "gt2099-01-01T00:00:00Z",
                                                  "_sort": "_lastUpdated", "_count": "100"}, headers=SITE_A))
    assert bundle["type"] == "searchset" and "entry" not in bundle
    assert bundle["link"][0]["url"].startswith("http://testserver/fhir/Task?_lastUpdated=gt2099")
    full = ok(client.get("/fhir/Task", params={"_count": "100"}, headers=ADMIN))
    assert len(full["entry"]) == 6


def test_a_revoked_api_client_token_is_refused_on_the_next_request(client, engine, settings):
    token = create_token(engine, settings, role="site:site-a", name="ehr", now=datetime.now(UTC))
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/fhir/Task", headers=headers).status_code == 200
    assert client.get("/fhir/Task", headers=headers).status_code == 200
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE api_client SET revoked_at = :now WHERE token_sha256 = :d"),
                     {"now": datetime.now(UTC), "d": hash_token(token)})
    outcome(client.get("/fhir/Task", headers=headers), 401, "login")
    assert client.get("/v1/orders", headers=headers).status_code == 401


def test_configured_tokens_follow_the_settings_object(engine, settings, tmp_path):
    assert principal_for_token("demo-site-a-token", settings, engine).subject == "site-a"
    data = settings.model_dump(mode="json")
    data["api_clients"] = [{"name": "other", "role": "admin", "token_sha256": hash_token("only-here")}]
    other = load_settings(settings.config, api_clients=data["api_clients"])
    assert principal_for_token("only-here", other, engine).is_admin
    assert principal_for_token("only-here", settings, engine) is None
    assert principal_for_token("demo-site-a-token", other, engine) is None


def test_the_cursor_path_joins_an_open_transaction_and_leaves_the_connection_as_it_found_it(seeded):
    q = parse_search("Task", [("_count", "100")], lenient=False)
    shape, binds = query._shape_and_binds(Scope("all"), q)
    binds["limit"] = 101
    statement = query._page_statement(shape, False, False)
    with seeded.connect() as conn:
        with conn.begin():
            conn.execute(sa.text("DELETE FROM fhir_resource_access"))
            conn.execute(sa.text("DELETE FROM fhir_search_token"))
            conn.execute(sa.text("DELETE FROM fhir_search_date"))
            conn.execute(sa.text("DELETE FROM fhir_resource_current"))
            assert fetch_all(conn, statement, binds) == []  # sees its own transaction's deletes
            conn.rollback()
        assert len(fetch_all(conn, statement, binds)) == 6
        assert not conn.in_transaction()
        dbapi_connection = conn.connection.dbapi_connection
        if seeded.dialect.driver == "psycopg":  # the autocommit switch is put back
            assert dbapi_connection.autocommit is False
