"""An override may decorate an identifier field but never replace the identifier: a profile with
``PID-3: "OTHER-MRN"`` would send every patient's order under one MRN (found by outside probing).
Such a message is refused (not sent, an ``error`` mapping issue naming the field); decorating the
identifier with more components, or filling a field the gateway leaves empty, is fine."""

from __future__ import annotations

import pytest

from gateway.cli.goldens import load_case
from gateway.config import load_settings
from gateway.intake.replay import replay_journey
from mappings.hl7v2.overrides import overridden_identifiers
from mappings.preview import preview_steps
from terminology import load_terminology
from tests.unit.hl7v2_cases import FIXTURES, NOW, journey, render, variant


@pytest.mark.parametrize(("path", "template"), [
    ("PID-3", "OTHER-MRN"),
    ("PID-3", "{{ order.order_id }}^^^SITEA^MR"),
    ("ORC-2", "SOMEONE-ELSES-ORDER"),
    ("ORC-4", "CHA999923A1B2C4K"),
    ("OBR-2", "X"),
])
def test_replacing_an_identifier_refuses_every_message_that_carries_it(path: str, template: str) -> None:
    site = variant("site-a", overrides={path: template})
    for snapshot, record in journey("site-a", "journey-autologous"):
        messages, issues = render(snapshot, record, site)
        segment = path.split("-")[0]
        carrying = [m for m in messages if f"\r{segment}|" in m.er7]
        assert carrying, (record.type, path)
        for message in carrying:
            assert message.refused and path in message.refused
        found = [i for i in issues if i.code == "hl7v2-identifier-overridden"]
        assert found and all(i.severity == "error" and i.path.endswith(path) for i in found)


def test_decorating_an_identifier_is_sent() -> None:
    site = variant("site-a", overrides={"ORC-4": "{{ order.coi }}^{{ manufacturer.id }}"})
    messages, issues = render(*journey("site-a", "journey-autologous")[0], site)
    assert messages and not any(m.refused for m in messages)
    assert not [i for i in issues if i.code == "hl7v2-identifier-overridden"]
    orc = next(s for s in messages[0].er7.split("\r") if s.startswith("ORC|"))
    snapshot = journey("site-a", "journey-autologous")[0][0]
    assert orc.split("|")[4] == f"{snapshot.coi}^acme-bio"


def test_only_a_changed_first_component_counts() -> None:
    segments = [["PID", "1", "", "MRN-1^^^A^MR"], ["ORC", "NW", "ORD-1", ""]]
    assert overridden_identifiers(segments, {("PID", 3): "MRN-1^^^B^MR"}) == []
    assert overridden_identifiers(segments, {("PID", 3): "MRN-2"}) == ["PID-3"]
    assert overridden_identifiers(segments, {("PID", 3): "MRN-1~MRN-2"}) == []
    assert overridden_identifiers(segments, {("ORC", 3): "FILLER-9"}) == []  # empty: nothing to protect
    assert overridden_identifiers(segments, {("PID", 5): "ANYTHING"}) == []  # not an identifier field


def test_preview_shows_the_refusal() -> None:
    fixture = load_case(FIXTURES / "events" / "journey-autologous.json").for_site("site-a")
    steps = replay_journey(load_settings(), fixture.order, fixture.events[:1], placed_at=fixture.placed_at)
    site = variant("site-a", overrides={"PID-3": "OTHER-MRN"})
    (placed, *_) = [s.to_json() for s in preview_steps(site, steps, load_terminology(), NOW)]
    assert placed["hl7v2"] and all(m["refused"] for m in placed["hl7v2"])
    assert "hl7v2-identifier-overridden" in {i["code"] for i in placed["issues"]}
