"""`cgt-gateway profile preview` on an invalid order or event file: every problem as
``FILE: /json/pointer: reason`` and exit 1, never pydantic's dump (which quotes the input values:
the patient's name, birth date and MRN)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from gateway.cli.profile import profile_app

ROOT = Path(__file__).resolve().parents[2]
PROFILE = str(ROOT / "fixtures/profiles/site-a.yaml")
CASE = json.loads((ROOT / "fixtures/events/journey-autologous.json").read_text())
PHI = ("Rivera", "Lucia", "MRN-448812", "1971-08-14")


def _preview(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(profile_app, ["preview", "--profile", PROFILE, *args])
    return result.exit_code, result.stdout + result.stderr


def test_an_invalid_order_is_named_by_pointer_without_quoting_patient_data(tmp_path: Path):
    order = {**CASE["order"], "priority": "soon", "nickname": "Ana"}
    path = tmp_path / "order.json"
    path.write_text(json.dumps(order))
    code, out = _preview("--order", str(path))
    assert code == 1
    assert out.splitlines() == [
        f"{path}: /priority: Input should be 'routine' or 'urgent'",
        f"{path}: /nickname: extra field not permitted",
        "invalid order or event: 2 problem(s)",
    ]
    for secret in PHI:
        assert secret not in out


def test_an_invalid_event_is_named_by_file_and_pointer(tmp_path: Path):
    order = tmp_path / "order.json"
    order.write_text(json.dumps(CASE["order"]))
    good, bad = CASE["events"][0], {**CASE["events"][1], "occurred_at": "yesterday"}
    events = tmp_path / "events.json"
    events.write_text(json.dumps([good, bad]))
    code, out = _preview("--order", str(order), "--events", str(events))
    assert code == 1
    assert out.splitlines() == [
        f"{events}: /1/occurred_at: must be an ISO 8601 date-time with a time zone, "
        "such as 2026-11-25T09:00:00Z",
        "invalid order or event: 1 problem(s)",
    ]
    # Passing the order file as an event names the unknown fields, still without their values.
    code, out = _preview("--order", str(order), "--events", str(order))
    assert code == 1
    assert f"{order}: /patient: extra field not permitted" in out.splitlines()
    for secret in PHI:
        assert secret not in out
