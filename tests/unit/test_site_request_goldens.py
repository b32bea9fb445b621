"""Golden files of site requests equal fixtures/expected/<site>/site-requests.* (this test never writes).

Regenerate deliberately with ``python -m gateway.cli.goldens``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.cli.goldens import (
    FIXTURES,
    SITE_REQUEST_CASES,
    SITES,
    Case,
    load_site_request_case,
    render_site_request_goldens,
    site_request_paths,
)
from gateway.config import load_settings
from gateway.intake.replay import replay_journey
from mappings.events import EventIn
from mappings.profile.loader import load_profile
from mappings.site_request import ANSWER_CONTROL, SITE_REQUEST_STATES
from mappings.translate_site_request import translate_site_request
from terminology import load_terminology
from tests.unit.hl7v2_cases import validate_hl7apy

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "gateway" / "demo" / "gateway.yaml"
REGENERATE = "outputs changed: review, then regenerate deliberately with `python -m gateway.cli.goldens`"


def replay(case: Case, events: Sequence[EventIn]) -> list[tuple[Any, Any]]:
    steps = replay_journey(load_settings(DEMO_CONFIG), case.order, events, placed_at=case.placed_at)
    return [(s.snapshot, s.record) for s in steps if s.snapshot is not None and s.record is not None]


@pytest.mark.parametrize("site_id", SITES)
@pytest.mark.parametrize("name", SITE_REQUEST_CASES)
def test_site_requests_match_golden_files(site_id: str, name: str) -> None:
    case = load_site_request_case(FIXTURES / "site-requests" / f"{name}.json").for_site(site_id)
    profile = load_profile(FIXTURES / "profiles" / f"{site_id}.yaml")
    fhir, hl7 = render_site_request_goldens(case, profile, load_terminology(), replay)
    fhir_path, hl7_path = site_request_paths(site_id, name)
    assert fhir == json.loads(fhir_path.read_text(encoding="utf-8")), REGENERATE
    assert hl7 == hl7_path.read_text(encoding="utf-8"), REGENERATE


def test_the_goldens_cover_every_answer_code_and_every_state() -> None:
    case = load_site_request_case(FIXTURES / "site-requests" / "site-requests.json")
    states = {r.raw["state"] for r in case.requests if r.raw["kind"] != "order_number"}
    assert states == set(SITE_REQUEST_STATES)
    codes = set()
    for site_id in SITES:
        text = site_request_paths(site_id, "site-requests")[1].read_text(encoding="utf-8")
        codes |= {line.split("|")[1] for line in text.splitlines() if line.startswith("ORC|")}
    assert {c for pair in ANSWER_CONTROL.values() for c in pair} <= codes
    assert any(r.raw["kind"] == "order_number" for r in case.requests) and case.site_order_number


@pytest.mark.parametrize("site_id", SITES)
def test_every_golden_answer_validates(site_id: str) -> None:
    case = load_site_request_case(FIXTURES / "site-requests" / "site-requests.json").for_site(site_id)
    profile = load_profile(FIXTURES / "profiles" / f"{site_id}.yaml")
    from gateway.cli.goldens import GOLDEN_NOW
    for item in case.requests:
        journey_events = [e for e in case.journey.events]
        ids = [e.event_id for e in journey_events]
        snapshot = replay(case.journey, [*journey_events[: ids.index(item.after) + 1], *item.then])[-1][0]
        translation = translate_site_request(snapshot, item.view(snapshot), profile, load_terminology(),
                                             GOLDEN_NOW)
        for message in translation.messages:
            validate_hl7apy(message)
