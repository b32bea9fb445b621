"""``cgt-gateway outbox list|show|retry|skip`` straight on the configured database."""

from __future__ import annotations

from pathlib import Path

import orjson
from sqlalchemy import update
from sqlmodel import Session
from typer.testing import CliRunner

from gateway.cli.outbox import outbox_app
from gateway.delivery.outbox import MessageState, OutboxMessage
from tests.integration.test_delivery_support import enqueue_mllp, messages, write_config

runner = CliRunner()


def _config(engine, tmp_path: Path) -> str:
    return str(write_config(tmp_path, engine.url.render_as_string(hide_password=False), {}))


def _lines(output: str) -> list[dict]:
    return [orjson.loads(line) for line in output.splitlines() if line.strip()]


def test_list_show_retry_and_skip(engine, tmp_path: Path) -> None:
    config = _config(engine, tmp_path)
    enqueue_mllp(engine, ["M1", "M2", "M3"])
    m1, m2, m3 = messages(engine)
    with Session(engine) as session:
        session.execute(update(OutboxMessage).where(OutboxMessage.id == m1.id)  # type: ignore[arg-type]
                        .values(state=MessageState.dead, last_detail="AE: Unknown product"))
        session.commit()

    listed = runner.invoke(outbox_app, ["list", "--config", config])
    assert listed.exit_code == 0, listed.output
    assert [(r["control_id"], r["state"]) for r in _lines(listed.output)] == [
        ("M1", "dead"), ("M2", "pending"), ("M3", "pending")]
    assert all("payload" not in r for r in _lines(listed.output))
    dead = runner.invoke(outbox_app, ["list", "--config", config, "--state", "dead"])
    assert [r["id"] for r in _lines(dead.output)] == [m1.id]
    page = runner.invoke(outbox_app, ["list", "--config", config, "--after-id", str(m1.id), "--limit", "1"])
    assert [r["id"] for r in _lines(page.output)] == [m2.id]
    bad = runner.invoke(outbox_app, ["list", "--config", config, "--state", "lost"])
    assert bad.exit_code == 2

    shown = runner.invoke(outbox_app, ["show", str(m1.id), "--config", config])
    [view] = _lines(shown.output)
    assert view["last_detail"] == "AE: Unknown product" and view["attempt_log"] == []
    assert "payload" not in view
    shown = runner.invoke(outbox_app, ["show", str(m1.id), "--config", config, "--payload"])
    with_payload = _lines(shown.output)
    assert with_payload[0]["payload"].startswith("MSH|")
    missing = runner.invoke(outbox_app, ["show", "999999", "--config", config])
    assert missing.exit_code == 1 and "does not exist" in missing.output

    retried = runner.invoke(outbox_app, ["retry", str(m1.id), "--config", config])
    assert retried.exit_code == 0 and _lines(retried.output)[0]["state"] == "pending"
    assert _lines(retried.output)[0]["control_id"] == "M1"
    again = runner.invoke(outbox_app, ["retry", str(m1.id), "--config", config])
    assert again.exit_code == 1 and "only dead or skipped" in again.output

    no_reason = runner.invoke(outbox_app, ["skip", str(m3.id), "--config", config])
    assert no_reason.exit_code == 2  # --reason is required
    blank = runner.invoke(outbox_app, ["skip", str(m3.id), "--config", config, "--reason", "  "])
    assert blank.exit_code == 1 and "reason is required" in blank.output
    skipped = runner.invoke(outbox_app, ["skip", str(m3.id), "--config", config, "--reason", "sent by fax"])
    assert skipped.exit_code == 0
    assert _lines(skipped.output)[0]["skip_reason"] == "sent by fax"
    assert [m.state for m in messages(engine)] == [MessageState.pending, MessageState.pending,
                                                   MessageState.skipped]


def test_the_worker_refuses_to_start_without_a_secret_it_needs(engine, tmp_path: Path) -> None:
    import typer
    import yaml

    from gateway.cli.outbox import worker_command

    config = Path(_config(engine, tmp_path))
    profile = tmp_path / "site-a.yaml"
    source = (Path(__file__).resolve().parents[2] / "fixtures" / "profiles" / "site-a.yaml").read_text()
    profile.write_text(source + "\ndelivery:\n  fhir_push:\n    base_url: https://fhir.site-a.example.org/r4\n"
                       "    auth: {type: bearer, token_env: CGT_TEST_UNSET_PUSH_TOKEN}\n", encoding="utf-8")
    settings = yaml.safe_load(config.read_text())
    settings["sites"] = [{"id": "site-a", "name": "A", "profile": str(profile)}]
    config.write_text(yaml.safe_dump(settings))
    app = typer.Typer()
    app.command()(worker_command)
    result = runner.invoke(app, ["--config", str(config)], env={"CGT_TEST_UNSET_PUSH_TOKEN": ""})
    assert result.exit_code == 1
    assert "CGT_TEST_UNSET_PUSH_TOKEN is not set" in result.output
