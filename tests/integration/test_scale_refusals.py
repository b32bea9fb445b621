"""``serve --processes N`` refuses what cannot work before anything starts, and ``/readyz`` says when
a process must not take traffic (issue 17)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from gateway.bootstrap import create_app
from gateway.cli.main import app
from tests.conftest import TestClient
from tests.integration.test_delivery_support import ROOT
from tests.integration.test_scale_support import pg_url


def test_more_than_one_process_on_sqlite_is_refused_before_anything_starts(tmp_path: Path,
                                                                          monkeypatch) -> None:
    database = tmp_path / "one-writer.db"
    monkeypatch.setenv("CGT_GATEWAY_DATABASE_URL", f"sqlite:///{database}")
    result = CliRunner().invoke(app, ["serve", "--processes", "2"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("cannot serve: --processes 2 needs PostgreSQL: the database sqlite:///")
    assert str(database) in result.output and "one writer process" in result.output
    assert not database.exists()  # nothing started: not even the migration


@pytest.mark.parametrize("processes", ["0", "-3"])
def test_fewer_than_one_process_is_refused(processes: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CGT_GATEWAY_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    result = CliRunner().invoke(app, ["serve", "--processes", processes])
    assert result.exit_code == 2, result.output
    assert result.output == f"cannot serve: --processes must be at least 1, not {processes}\n"


def test_a_taken_mllp_port_is_named_before_any_process_starts(tmp_path: Path, monkeypatch) -> None:
    """The parent tries each site's MLLP address as the children will (SO_REUSEPORT): a port another
    program holds stops ``serve`` with the site and the address, exit status 1."""
    url = pg_url()
    with socket.socket() as holder:  # a listener without SO_REUSEPORT: nobody may share its port
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        profile = tmp_path / "site-a.yaml"
        profile.write_text((ROOT / "fixtures" / "profiles" / "site-a.yaml").read_text(encoding="utf-8")
                           .replace("    port: 2575\n", f"    port: {port}\n"), encoding="utf-8")
        config = tmp_path / "gateway.yaml"
        config.write_text((ROOT / "gateway" / "demo" / "gateway.yaml").read_text(encoding="utf-8")
                          .replace("../../fixtures/profiles/site-a.yaml", str(profile))
                          .replace("../../fixtures/profiles/", str(ROOT / "fixtures" / "profiles") + "/"),
                          encoding="utf-8")
        monkeypatch.setenv("CGT_GATEWAY_DATABASE_URL", url)
        result = CliRunner().invoke(app, ["serve", "--processes", "2", "--config", str(config)])
    assert result.exit_code == 1, result.output
    # the refusal is serve's last word (the migration's own log lines may come before it when logging
    # is already configured in this process by an earlier test)
    assert result.output.endswith("cannot start: site 'site-a': cannot listen for HL7v2 (MLLP) on "
                                  f"127.0.0.1:{port}: Address already in use\n"), result.output


def test_readyz_fails_while_the_schema_is_behind(settings, engine: Engine) -> None:
    """503 while the database is at an older migration of this code or not migrated at all; ready at
    the newest, and at a revision this code does not know (a newer release migrated first)."""
    with engine.connect() as conn:
        head = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()

    def stamp(revision: str) -> None:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision})

    try:
        with TestClient(create_app(settings, engine=engine), raise_server_exceptions=False) as client:
            assert client.get("/readyz").json() == {"status": "ready", "database": "ok"}
            stamp("0010_subscriptions" if head != "0010_subscriptions" else "0001_spine")
            behind = client.get("/readyz")
            assert behind.status_code == 503 and behind.json()["code"] == "not-ready"
            assert behind.json()["detail"] == "The database schema is behind this release's newest migration."
            stamp("9999_a_newer_release")
            assert client.get("/readyz").status_code == 200
            with engine.begin() as conn:
                conn.execute(sa.text("DELETE FROM alembic_version"))
            empty = client.get("/readyz")
            assert empty.status_code == 503 and empty.json()["detail"] == "The database is not migrated."
            assert client.get("/healthz").json() == {"status": "ok"}  # the process itself is fine
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM alembic_version"))
            conn.execute(sa.text("INSERT INTO alembic_version (version_num) VALUES (:r)"), {"r": head})
