"""Golden files: the translation of each journey for each demo site equals fixtures/expected.

Regenerate deliberately with ``python -m gateway.cli.goldens``; this test never writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli.goldens import (
    CASES,
    FIXTURES,
    GOLDEN_NOW,
    SITES,
    VOLATILE_FIELDS,
    expected_paths,
    golden_fhir,
    golden_hl7,
    load_case,
    strip_volatile,
)
from gateway.config import load_settings
from gateway.intake.replay import preview_order
from mappings.profile.loader import load_profile
from terminology import load_terminology

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "gateway" / "demo" / "gateway.yaml"
REGENERATE = "outputs changed: review, then regenerate deliberately with `python -m gateway.cli.goldens`"


@pytest.mark.parametrize("site_id", SITES)
@pytest.mark.parametrize("case_name", CASES)
def test_translation_matches_golden_files(site_id: str, case_name: str) -> None:
    case = load_case(FIXTURES / "events" / f"{case_name}.json").for_site(site_id)
    profile = load_profile(FIXTURES / "profiles" / f"{site_id}.yaml")
    steps = preview_order(
        load_settings(DEMO_CONFIG),
        profile,
        case.order,
        case.events,
        load_terminology(),
        now=GOLDEN_NOW,
        placed_at=case.placed_at,
    )
    fhir_path, hl7_path = expected_paths(site_id, case_name)
    expected = json.loads(fhir_path.read_text(encoding="utf-8"))
    actual = golden_fhir(steps)
    assert [s["event_id"] for s in actual] == [s["event_id"] for s in expected], REGENERATE
    for got, want in zip(strip_volatile(actual), strip_volatile(expected), strict=True):
        assert got == want, f"{site_id}/{case_name} {got['event_id']}: {REGENERATE}"
    assert golden_hl7(steps) == hl7_path.read_text(encoding="utf-8"), REGENERATE


def test_volatile_field_list_is_tiny_and_named() -> None:
    assert len(VOLATILE_FIELDS) <= 3
    steps = [{"a": {"b": 1, "c": 2}, "d": [{"b": 1}, {"b": 2, "e": 3}]}]
    assert strip_volatile(steps, ["a.b", "d.b"]) == [{"a": {"c": 2}, "d": [{}, {"e": 3}]}]
    assert steps[0]["a"] == {"b": 1, "c": 2}  # the input is not modified


def test_goldens_show_replay_and_late_events_write_no_task_version() -> None:
    expected = json.loads(expected_paths("site-a", "journey-autologous")[0].read_text(encoding="utf-8"))
    late = next(s for s in expected if s["event_id"] == "evt-017")
    assert late["late"] is True
    assert [e["request"]["url"].split("/")[0] for e in late["bundle"]["entry"]] == ["Observation"]
    assert any(url.startswith("Task/") for url in late["unchanged"])
