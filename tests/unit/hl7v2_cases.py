"""Shared inputs and independent checks for the HL7v2 rendering tests (no tests here).

Inputs come from the journey fixtures replayed through the real lifecycle (``gateway.intake.replay``);
checks use the two independent parsers: hl7apy (STRICT validation for the declared version) and
python-hl7.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

import hl7
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message, parse_segment

from gateway.cli.goldens import FIXTURES, load_case
from gateway.config import load_settings
from gateway.intake.replay import replay_journey
from mappings.er7.structure import check_segment_order
from mappings.events import EventRecord
from mappings.hl7v2.render import render_messages
from mappings.profile.hl7v2 import Hl7v2Settings
from mappings.profile.loader import load_profile
from mappings.profile.schema import SiteProfile
from mappings.result import Hl7Message, MappingIssue
from mappings.snapshot import OrderSnapshot
from terminology import load_terminology

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CASES = ("journey-autologous", "journey-cancelled")
SITES = ("site-a", "site-b")


@cache
def profile(site_id: str) -> SiteProfile:
    return load_profile(FIXTURES / "profiles" / f"{site_id}.yaml")


def variant(site_id: str, **hl7v2: Any) -> SiteProfile:
    """The demo profile with some ``hl7v2`` settings changed (validated like a loaded profile)."""
    base = profile(site_id)
    settings = Hl7v2Settings.model_validate({**base.hl7v2.model_dump(), **hl7v2})
    return base.model_copy(update={"hl7v2": settings})


@cache
def journey(site_id: str, case: str) -> tuple[tuple[OrderSnapshot, EventRecord], ...]:
    """(snapshot, record) for every accepted event of a fixture journey ordered for ``site_id``."""
    fixture = load_case(FIXTURES / "events" / f"{case}.json").for_site(site_id)
    steps = replay_journey(load_settings(), fixture.order, fixture.events, placed_at=fixture.placed_at)
    return tuple((s.snapshot, s.record) for s in steps if s.record is not None and s.snapshot is not None)


def render(
    snapshot: OrderSnapshot, record: EventRecord, site_profile: SiteProfile
) -> tuple[tuple[Hl7Message, ...], tuple[MappingIssue, ...]]:
    return render_messages(snapshot, record, site_profile, load_terminology(), NOW)


def render_journey(site_profile: SiteProfile, case: str) -> list[tuple[EventRecord, Hl7Message]]:
    out = []
    for snapshot, record in journey(site_profile.site_id, case):
        messages, _ = render(snapshot, record, site_profile)
        out.extend((record, m) for m in messages)
    return out


def validate_hl7apy(message: Hl7Message) -> tuple[Any, str]:
    """STRICT parse + validate for the declared version; ORM^O01: TOLERANT + our segment-order check."""
    check_segment_order(message.er7)
    if message.message_type == "ORM^O01":
        tolerant = parse_message(message.er7, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=True)
        return tolerant, message.er7
    er7 = message.er7
    if message.version == "2.3" and message.message_type in ("SIU^S13", "SIU^S14", "SIU^S15"):
        # HL7 2.3 has no message-structure ids; S13-S15 share S12's syntax (chapter 10), but hl7apy's
        # 2.3 library only knows SIU_S12: validate the same segments under that name.
        er7 = er7.replace(f"|{message.message_type}|", "|SIU^S12|", 1)
    parsed = parse_message(er7, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert parsed.version == message.version
    parsed.validate()
    return parsed, er7


def _segments(node: Any) -> list[Any]:
    found = []
    for child in node.children:
        found.extend([child] if child.classname == "Segment" else _segments(child))
    return found


def same_fields_in_both_parsers(message: Hl7Message) -> None:
    """Valid for hl7apy, and python-hl7 and hl7apy read every field of every segment as rendered."""
    parsed, apy_er7 = validate_hl7apy(message)
    by_name: dict[str, list[Any]] = {}
    for seg in _segments(parsed):
        by_name.setdefault(seg.name, []).append(seg)
    parsed_py = hl7.parse(message.er7)
    lines = [line for line in message.er7.split("\r") if line]
    apy_lines = [line for line in apy_er7.split("\r") if line]
    assert len(parsed_py) == len(lines)
    seen: dict[str, int] = {}
    for line, apy_line, py_seg in zip(lines, apy_lines, parsed_py, strict=True):
        name = line[:3]
        assert str(py_seg) == line
        index = seen[name] = seen.get(name, -1) + 1
        if name.startswith("Z"):  # hl7apy keeps Z-segments outside the grouped tree
            apy_seg = parse_segment(line, version=message.version)
        else:
            apy_seg = by_name[name][index]
        assert apy_seg.to_er7() == apy_line
        apy_fields = {f.name: f.to_er7() for f in apy_seg.children}
        py_fields = hl7.parse(apy_line)[0] if apy_line != line else py_seg  # (relabelled 2.3 MSH)
        for number in range(2 if name == "MSH" else 1, len(py_seg)):
            assert str(py_fields[number]) == apy_fields.get(f"{name}_{number}", ""), (name, number)
    assert sum(seen.values()) + len(seen) == len(lines)
