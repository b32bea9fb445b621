"""Shared fixtures: ``engine`` (a migrated, empty database: SQLite always, PostgreSQL when
``CGT_GATEWAY_TEST_DATABASE_URL`` is set) and ``client`` (the app on the demo configuration).

``clock`` is the app's clock: a settable ``FakeClock`` (starts at the real time; ``advance``/``set``).
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its TestClient and warns once on import when it finds httpx;
    # the TestClient works the same with httpx, which the project depends on.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from gateway.audit.trail import stop_all_threads
from gateway.bootstrap import create_app
from gateway.config import DEMO_CONFIG, Settings, load_settings
from gateway.store.db import make_engine, metadata, migrate

PG_URL_VAR = "CGT_GATEWAY_TEST_DATABASE_URL"

ACME = {"Authorization": "Bearer demo-acme-token"}
NOVA = {"Authorization": "Bearer demo-nova-token"}
SITE_A = {"Authorization": "Bearer demo-site-a-token"}
SITE_B = {"Authorization": "Bearer demo-site-b-token"}
ADMIN = {"Authorization": "Bearer demo-admin-token"}


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current

    def set(self, value: datetime) -> None:
        self.current = value


def _head() -> str:
    from alembic.script import ScriptDirectory

    from gateway.store.db import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _reset_postgres(engine: Engine) -> None:
    """Empty every table when the schema is at the newest migration; else drop ``public`` and migrate."""
    tables = {t.name for t in metadata().sorted_tables}
    with engine.begin() as conn:
        existing = set(sa.inspect(conn).get_table_names())
        at_head = (
            "alembic_version" in existing
            and conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == _head()
        )
        if at_head and tables <= existing:
            for table in reversed(metadata().sorted_tables):  # DELETE: far cheaper than TRUNCATE here
                conn.execute(table.delete())
            return
        conn.execute(sa.text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    migrate(engine)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file per test session; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "gateway.store.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated, empty database: a SQLite file, or the PostgreSQL test database (tables emptied,
    or schema ``public`` dropped, recreated and migrated when it is not at the newest migration)."""
    if request.param == "sqlite":
        path = tmp_path / "gateway.store.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        engine = make_engine(f"sqlite:///{path}")
    else:
        url = os.environ.get(PG_URL_VAR)
        if not url:
            pytest.skip(f"{PG_URL_VAR} is not set")
        engine = make_engine(url)
        _reset_postgres(engine)
    yield engine
    stop_all_threads()  # an app built on this engine without its lifespan left its audit thread running
    engine.dispose()


@pytest.fixture
def settings(engine: Engine) -> Settings:
    """The demo configuration pointed at the test database, published at the TestClient's address
    (absolute URLs come from ``public_base_url``, never from the request's ``Host``)."""
    return load_settings(DEMO_CONFIG, database_url=engine.url.render_as_string(hide_password=False),
                         public_base_url="http://testserver")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(settings: Settings, engine: Engine, clock: FakeClock) -> Iterator[TestClient]:
    """A TestClient on the demo configuration with the ``engine`` database and the ``clock``."""
    app = create_app(settings, engine=engine, now=clock)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


# --------------------------------------------------------------------------- request bodies

ACME_COI = "CHA999923A1B2C3M"  # ISBT 128 CoI with its check character
NOVA_COI = "NC-000123"  # GT-HEM-01's pattern: ^NC-[0-9]{6}$


def isbt_coi(n: int) -> str:
    """A distinct valid ISBT 128 CoI (facility A9999, year 23, sequence n) with its check character."""
    from terminology.isbt128 import check_character

    data = f"CHA999923{n:06d}"
    return data + check_character(data)


def order_body(order_id: str = "ORD-1", **overrides: object) -> dict:
    """A valid acme-bio CART-CD19 order for site-a (override any top-level field)."""
    body: dict = {
        "order_id": order_id,
        "coi": ACME_COI,
        "product_code": "CART-CD19",
        "site_id": "site-a",
        "patient": {
            "mrn": "MRN-0042",
            "family": "Zyxwvut",
            "given": ["Quillon"],
            "birth_date": "1971-03-09",
            "sex": "female",
        },
        "ordering_provider": {"npi": "1234567893", "family": "Okafor", "given": ["Ada"]},
        "requested": {"apheresis_date": "2026-12-01"},
        "priority": "routine",
    }
    body.update(overrides)
    return body


def nova_order_body(order_id: str = "NOVA-1", **overrides: object) -> dict:
    fields: dict = {"coi": NOVA_COI, "product_code": "GT-HEM-01", "site_id": "site-b", **overrides}
    return order_body(order_id, **fields)


def event_body(
    event_id: str, type_: str, occurred_at: str, data: dict | None = None, coi: str = ACME_COI
) -> dict:
    return {"event_id": event_id, "type": type_, "occurred_at": occurred_at, "coi": coi, "data": data or {}}
