"""Once the site told us its own order number (NA), every HL7v2 message to it carries that number in
ORC-3 / OBR-3 (and SCH-27), namespace the site's application; nothing else changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.intake.retraction import replay_without
from mappings.retraction import Retraction, translate_retraction
from terminology import load_terminology
from tests.unit.hl7v2_cases import (
    CASES,
    SITES,
    journey,
    profile,
    render,
    same_fields_in_both_parsers,
    validate_hl7apy,
    variant,
)

NUMBER = "ORD-88231"
NAMESPACE = {"site-a": "EPIC", "site-b": "MEDITECH"}


def _fields(er7: str) -> list[list[str]]:
    return [s.split("|") for s in er7.split("\r") if s]


@pytest.mark.parametrize("site_id", SITES)
@pytest.mark.parametrize("case", CASES)
def test_every_message_carries_the_site_order_number_as_filler(site_id: str, case: str) -> None:
    site = profile(site_id)
    for snapshot, record in journey(site_id, case):
        plain, _ = render(snapshot, record, site)
        numbered, _ = render(snapshot.model_copy(update={"site_order_number": NUMBER}), record, site)
        assert len(plain) == len(numbered)
        for before, after in zip(plain, numbered, strict=True):
            same_fields_in_both_parsers(after)
            assert before.control_id == after.control_id
            changed = []
            for old, new in zip(_fields(before.er7), _fields(after.er7), strict=True):
                for number, (x, y) in enumerate(zip(old, new, strict=True)):
                    if x != y:
                        changed.append((new[0], number))
                        assert y == f"{NUMBER}^{NAMESPACE[site_id]}"
                        assert x == f"{snapshot.order.order_id}^{snapshot.manufacturer.id}"
            assert set(changed) <= {("ORC", 3), ("OBR", 3), ("SCH", 27)}
            assert ("ORC", 3) in changed or after.message_type.startswith("SIU")
            for segment in _fields(after.er7):
                if segment[0] == "SCH":  # the appointment ids never change
                    assert segment[2].startswith(f"{snapshot.order.order_id}-")


def test_the_retraction_messages_carry_it_too() -> None:
    steps = journey("site-a", "journey-autologous")
    before, _ = steps[4]
    retracted = before.events[-1]
    replayed = replay_without(before.events, retracted, autologous=True)
    after = before.model_copy(update={"events": replayed.events, "status": replayed.state.status})
    before, after = (s.model_copy(update={"site_order_number": NUMBER}) for s in (before, after))
    when = datetime(2026, 6, 1, tzinfo=UTC)
    translation = translate_retraction(before, after, retracted, Retraction("entered in error", when),
                                       profile("site-a"), load_terminology(), when)
    assert translation.messages
    for message in translation.messages:
        validate_hl7apy(message)
        fillers = [s[3] if s[0] == "ORC" else s[27] for s in _fields(message.er7) if s[0] in ("ORC", "SCH")]
        assert fillers and all(f == f"{NUMBER}^EPIC" for f in fillers)


def test_a_site_order_number_outside_the_charset_refuses_the_message() -> None:
    snapshot, record = journey("site-b", "journey-autologous")[1]
    (message, *_), issues = render(snapshot.model_copy(update={"site_order_number": "NÜM-1"}), record,
                                   profile("site-b"))
    assert message.refused is not None and "ORC-3" in message.refused
    assert any(i.code == "hl7v2-charset-refused" for i in issues)


def test_delimiters_in_the_number_are_escaped() -> None:
    snapshot, record = journey("site-a", "journey-autologous")[1]
    numbered = snapshot.model_copy(update={"site_order_number": "A|B^C"})
    (message, *_), _ = render(numbered, record, profile("site-a"))
    orc = next(s for s in _fields(message.er7) if s[0] == "ORC")
    assert orc[3] == "A\\F\\B\\S\\C^EPIC"
    validate_hl7apy(message)


def test_override_templates_see_the_filler_number_the_message_carries() -> None:
    site = variant("site-a", overrides={"ORC-3": "{{ order.filler_order_number }}^EPIC^LOCAL"})
    snapshot, record = journey("site-a", "journey-autologous")[1]
    (message, *_), _ = render(snapshot.model_copy(update={"site_order_number": NUMBER}), record, site)
    assert message.refused is None
    assert next(s for s in _fields(message.er7) if s[0] == "ORC")[3] == f"{NUMBER}^EPIC^LOCAL"
