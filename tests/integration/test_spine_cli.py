"""`cgt-gateway token create` prints a token once, stores only its hash, and the token works."""

from __future__ import annotations

import hashlib

from typer.testing import CliRunner

from gateway.cli.main import app
from gateway.config import DEMO_CONFIG


def test_token_create_stores_only_the_hash(tmp_path, monkeypatch):
    db = tmp_path / "cli.db"
    monkeypatch.setenv("CGT_GATEWAY_DATABASE_URL", f"sqlite:///{db}")
    result = CliRunner().invoke(
        app,
        [
            "token",
            "create",
            "--role",
            "manufacturer:acme-bio",
            "--name",
            "acme prod",
            "--config",
            str(DEMO_CONFIG),
        ],
    )
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[0]
    assert len(token) > 30

    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT name, role, token_sha256 FROM api_client")).all()
    engine.dispose()
    assert rows == [("acme prod", "manufacturer:acme-bio", hashlib.sha256(token.encode()).hexdigest())]
    assert token.encode() not in db.read_bytes()

    from fastapi.testclient import TestClient

    from gateway.bootstrap import create_app
    from gateway.config import load_settings

    settings = load_settings(DEMO_CONFIG)
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/orders", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert client.get("/v1/orders", headers={"Authorization": "Bearer " + token[:-1]}).status_code == 401


def test_token_create_refuses_unknown_roles(tmp_path, monkeypatch):
    monkeypatch.setenv("CGT_GATEWAY_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    result = CliRunner().invoke(app, ["token", "create", "--role", "site:nowhere"])
    assert result.exit_code == 2
    assert "unknown site" in result.output


def test_cli_has_serve_token_and_profile_commands():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "token", "profile", "migrate"):
        assert command in result.output


def test_serve_refuses_to_start_on_an_invalid_profile(tmp_path, monkeypatch):
    import yaml

    data = yaml.safe_load(DEMO_CONFIG.read_text())
    broken = tmp_path / "site-a.yaml"
    broken.write_text("site_id: site-a\nname: A\n")
    data["sites"][0]["profile"] = str(broken)
    data["sites"][1]["profile"] = str((DEMO_CONFIG.parent / data["sites"][1]["profile"]).resolve())
    config = tmp_path / "gw.yaml"
    config.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("CGT_GATEWAY_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    result = CliRunner().invoke(app, ["serve", "--config", str(config)])
    assert result.exit_code == 1
    assert "cannot start" in result.output and str(broken) in result.output


def test_invalid_configuration_exits_2(tmp_path):
    config = tmp_path / "gw.yaml"
    config.write_text("port: -1\n")
    result = CliRunner().invoke(app, ["migrate", "--config", str(config)])
    assert result.exit_code == 2 and "invalid configuration" in result.output
