"""Preview: per event the transaction Bundle, HL7v2 messages and issues, JSON-ready, no database."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle
from typer.testing import CliRunner

from gateway.cli.goldens import FIXTURES, load_case
from gateway.cli.main import app
from gateway.config import load_settings
from gateway.errors import GatewayError
from gateway.intake.replay import preview_order, replay_journey
from mappings.events import EventIn
from mappings.profile.loader import load_profile
from terminology import load_terminology

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = ROOT / "gateway" / "demo" / "gateway.yaml"
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _preview(case_name: str, site_id: str, *, order_site: str | None = None) -> list[dict[str, object]]:
    case = load_case(FIXTURES / "events" / f"{case_name}.json").for_site(order_site or site_id)
    profile = load_profile(FIXTURES / "profiles" / f"{site_id}.yaml")
    steps = preview_order(
        load_settings(DEMO_CONFIG),
        profile,
        case.order,
        case.events,
        load_terminology(),
        now=NOW,
        placed_at=case.placed_at,
    )
    return [s.to_json() for s in steps]


def test_preview_is_json_ready_with_put_entries() -> None:
    result = _preview("journey-autologous", "site-a")
    assert json.loads(json.dumps(result)) == result
    assert len(result) == 21
    for step in result:
        bundle = step["bundle"]
        assert isinstance(bundle, dict)
        Bundle.model_validate(bundle)
        assert bundle["type"] == "transaction"
        for entry in bundle["entry"]:
            resource = entry["resource"]
            assert entry["request"] == {
                "method": "PUT",
                "url": f"{resource['resourceType']}/{resource['id']}",
            }
        assert step["profile_version"] == load_profile(FIXTURES / "profiles" / "site-a.yaml").version


def test_refused_events_are_reported_and_change_nothing() -> None:
    result = _preview("journey-cancelled", "site-a")
    refused = result[-1]
    assert refused["accepted"] is False and refused["bundle"] is None
    assert refused["refusal"]["code"] == "terminal-state"  # type: ignore[index]


def test_order_for_another_site_is_previewed_with_a_warning() -> None:
    first = _preview("journey-cancelled", "site-b", order_site="site-a")[0]
    assert first["issues"][0]["code"] == "other-site"  # type: ignore[index]


def test_replay_refuses_wrong_coi_bad_data_and_lifecycle_violations() -> None:
    case = load_case(FIXTURES / "events" / "journey-cancelled.json")
    events = [
        EventIn.model_validate(
            {
                "event_id": "x1",
                "type": "order.confirmed",
                "occurred_at": "2026-05-05T09:00:00Z",
                "coi": "NC-999999",
                "data": {},
            }
        ),
        EventIn.model_validate(
            {
                "event_id": "x2",
                "type": "collection.completed",
                "occurred_at": "2026-05-05T09:00:00Z",
                "coi": "NC-000123",
                "data": {},
            }
        ),
        EventIn.model_validate(
            {
                "event_id": "x3",
                "type": "order.resumed",
                "occurred_at": "2026-05-05T09:00:00Z",
                "coi": "NC-000123",
                "data": {},
            }
        ),
        EventIn.model_validate(
            {
                "event_id": "x4",
                "type": "order.confirmed",
                "occurred_at": "2026-05-05T10:00:00Z",
                "coi": "NC-000123",
                "data": {},
            }
        ),
    ]
    steps = replay_journey(load_settings(DEMO_CONFIG), case.order, events, placed_at=case.placed_at)
    assert [s.refusal.code if s.refusal else "ok" for s in steps] == [
        "ok",
        "coi-mismatch",
        "validation-failed",
        "not-on-hold",
        "ok",
    ]
    assert steps[2].refusal is not None and steps[2].refusal.errors[0][0] == "/data/collected_at"
    assert [s.record.sequence for s in steps if s.record] == [0, 1]


def test_replay_refuses_an_unknown_product() -> None:
    case = load_case(FIXTURES / "events" / "journey-cancelled.json")
    order = case.order.model_copy(update={"product_code": "NOPE-1"})
    with pytest.raises(GatewayError) as caught:
        replay_journey(load_settings(DEMO_CONFIG), order, [], placed_at=case.placed_at)
    assert caught.value.code == "unknown-product"


def test_cli_preview_prints_bundles_messages_and_issues(tmp_path: Path) -> None:
    case = json.loads((FIXTURES / "events" / "journey-cancelled.json").read_text(encoding="utf-8"))
    order = tmp_path / "order.json"
    order.write_text(json.dumps(case["order"]), encoding="utf-8")
    one = tmp_path / "one.json"
    one.write_text(json.dumps(case["events"][0]), encoding="utf-8")
    rest = tmp_path / "rest.json"
    rest.write_text(json.dumps(case["events"][1:]), encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "profile",
            "preview",
            "--profile",
            str(FIXTURES / "profiles" / "site-a.yaml"),
            "--config",
            str(DEMO_CONFIG),
            "--order",
            str(order),
            "--placed-at",
            case["placed_at"],
            "--events",
            str(one),
            str(rest),
        ],
    )
    assert result.exit_code == 0, result.output
    heads = [line for line in result.output.splitlines() if line.startswith("===")]
    assert len(heads) == 10
    assert heads[0] == "=== NOVA-ORD-0042:placed order.placed: accepted -> placed"
    assert heads[-1].startswith("=== nc-009 manufacturing.completed: refused terminal-state:")
    assert result.output.count("--- FHIR transaction Bundle") == 9
    assert result.output.count("--- HL7v2 (") == 9 and "--- issues (0)" in result.output

    as_json = runner.invoke(
        app,
        [
            "profile",
            "preview",
            "--profile",
            str(FIXTURES / "profiles" / "site-b.yaml"),
            "--config",
            str(DEMO_CONFIG),
            "--order",
            str(FIXTURES / "events" / "journey-cancelled.json"),
            "--json",
        ],
    )
    assert as_json.exit_code == 0, as_json.output
    parsed = json.loads(as_json.output)
    assert len(parsed) == 10 and parsed[0]["issues"][0]["code"] == "other-site"


def test_cli_preview_rejects_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "profile",
            "preview",
            "--profile",
            str(FIXTURES / "profiles" / "site-a.yaml"),
            "--config",
            str(DEMO_CONFIG),
            "--order",
            str(bad),
        ],
    )
    assert result.exit_code == 1
    wrong = tmp_path / "order.json"
    wrong.write_text(json.dumps({"order_id": "x"}), encoding="utf-8")
    result = runner.invoke(
        app,
        [
            "profile",
            "preview",
            "--profile",
            str(FIXTURES / "profiles" / "site-a.yaml"),
            "--config",
            str(DEMO_CONFIG),
            "--order",
            str(wrong),
        ],
    )
    assert result.exit_code == 1
    assert "invalid order or event" in result.output
