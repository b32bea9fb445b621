"""Q4 (outside QA): ``cgt-gateway outbox ...`` against a database that was never migrated says so
and exits non-zero, instead of a raw "no such table" traceback; for SQLite it creates no file
(nor directory) where there was none."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from gateway.cli.outbox import outbox_app
from tests.conftest import PG_URL_VAR
from tests.integration.test_delivery_support import write_config

runner = CliRunner()
COMMANDS = (["list"], ["show", "1"], ["retry", "1"], ["skip", "1", "--reason", "r"])


def _assert_refused(config: Path) -> None:
    for command in COMMANDS:
        result = runner.invoke(outbox_app, [*command, "--config", str(config)])
        assert result.exit_code == 1, (command, result.output)
        assert isinstance(result.exception, SystemExit), result.exception  # no traceback
        assert "not migrated" in result.output and "cgt-gateway migrate" in result.output, result.output


def test_a_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    database = tmp_path / "var" / "cgt-gateway.db"
    _assert_refused(write_config(tmp_path, f"sqlite:///{database}", {}))
    assert not database.exists() and not database.parent.exists()


def test_an_empty_sqlite_file_is_not_migrated(tmp_path: Path) -> None:
    database = tmp_path / "empty.db"
    sqlite3.connect(database).close()
    _assert_refused(write_config(tmp_path, f"sqlite:///{database}", {}))


def test_a_migrated_database_still_works(engine, tmp_path: Path) -> None:
    config = write_config(tmp_path, engine.url.render_as_string(hide_password=False), {})
    listed = runner.invoke(outbox_app, ["list", "--config", str(config)])
    assert listed.exit_code == 0 and listed.output == "", listed.output
    missing = runner.invoke(outbox_app, ["show", "1", "--config", str(config)])
    assert missing.exit_code == 1 and "does not exist" in missing.output


@pytest.mark.postgres
def test_an_empty_postgresql_schema_is_not_migrated(tmp_path: Path) -> None:
    url = os.environ.get(PG_URL_VAR)
    if not url:
        pytest.skip(f"{PG_URL_VAR} is not set")
    admin = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA IF EXISTS q4_unmigrated CASCADE; CREATE SCHEMA q4_unmigrated"))
    try:
        sep = "&" if "?" in url else "?"
        _assert_refused(write_config(tmp_path, f"{url}{sep}options=-csearch_path%3Dq4_unmigrated", {}))
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA IF EXISTS q4_unmigrated CASCADE"))
        admin.dispose()
