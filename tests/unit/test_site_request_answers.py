"""The HL7v2 answer to a decided site request (CR/UC/HR/UH/OR/UR/XR/UX): structure, codes, identifiers.

Every answer validates with hl7apy STRICT for its version (ORM^O01: the TOLERANT exception documented
in test_hl7v2_structure) and python-hl7 reads the same fields.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.er7.escape import unescape
from mappings.hl7v2.answers import CONTROL_REASON_MAX, answer_key, control_reason
from mappings.hl7v2.event_map import ORDER_STATUS_BY_STATUS
from mappings.hl7v2.fields import format_ts, site_zone
from mappings.hl7v2.render import control_id
from mappings.profile.schema import SiteProfile
from mappings.result import Hl7Message
from mappings.site_request import ANSWER_CONTROL, SITE_REQUEST_STATES, SiteRequestKind, SiteRequestView
from mappings.snapshot import OrderSnapshot
from mappings.translate_site_request import translate_site_request
from terminology import load_terminology
from tests.unit.hl7v2_cases import (
    NOW,
    journey,
    profile,
    same_fields_in_both_parsers,
    validate_hl7apy,
    variant,
)

RECEIVED = datetime(2026, 3, 15, 10, 0, tzinfo=UTC)
DECIDED = datetime(2026, 3, 15, 16, 0, tzinfo=UTC)
REASON = "Manufacturing has started | lot A^1 & co ~ \\ no cancel"


def sites() -> dict[str, SiteProfile]:
    """Every order message type in every version a site may use."""
    return {
        "site-a 2.5.1 OML^O21": profile("site-a"),
        "site-a 2.5.1 ORM^O01": variant("site-a", order_message="ORM^O01"),
        "site-a 2.4 OML^O21": variant("site-a", version="2.4", charset="UNICODE"),
        "site-a 2.4 ORM^O01": variant("site-a", version="2.4", charset="UNICODE", order_message="ORM^O01"),
        "site-b 2.3 ORM^O01": profile("site-b"),
        "site-b 2.4 ORM^O01 OBX": variant("site-b", version="2.4", coi_location="OBX"),
    }


def snapshot_at(site_id: str, index: int, case: str = "journey-autologous") -> OrderSnapshot:
    snapshot, _ = journey(site_id, case)[index]
    return snapshot


def request(snapshot: OrderSnapshot, kind: SiteRequestKind, state: Any, *,
            reason: str | None = REASON, request_id: str = "SR-0042", **extra: Any) -> SiteRequestView:
    decided = state in ("applied", "accepted", "declined")
    return SiteRequestView(
        request_id=request_id, order_id=snapshot.order.order_id, site_id=snapshot.site.id,
        manufacturer_id=snapshot.manufacturer.id, kind=kind, state=state, channel="hl7v2",
        received_at=RECEIVED, reason="Patient declined", decision_reason=reason if decided else None,
        decided_at=DECIDED if decided else None, **extra)


def answer(snapshot: OrderSnapshot, site: SiteProfile, req: SiteRequestView) -> Hl7Message:
    translation = translate_site_request(snapshot, req, site, load_terminology(), NOW)
    assert len(translation.messages) == 1
    return translation.messages[0]


def fields(message: Hl7Message, segment_id: str) -> list[str]:
    return next(s for s in message.er7.split("\r") if s.startswith(segment_id + "|")).split("|")


ANSWERS = [(kind, granted) for kind in ANSWER_CONTROL for granted in (True, False)]


@pytest.mark.parametrize("site_name", list(sites()))
@pytest.mark.parametrize(("kind", "granted"), ANSWERS)
def test_every_answer_validates_in_every_version(site_name: str, kind: SiteRequestKind,
                                                  granted: bool) -> None:
    site = sites()[site_name]
    snapshot = snapshot_at(site.site_id, 7)  # manufacturing started
    message = answer(snapshot, site, request(snapshot, kind, "accepted" if granted else "declined"))
    same_fields_in_both_parsers(message)  # hl7apy STRICT (ORM^O01 TOLERANT + segment order) and python-hl7
    assert message.version == site.hl7v2.version
    assert message.message_type == site.hl7v2.order_message
    assert message.refused is None
    orc = fields(message, "ORC")
    assert orc[1] == ANSWER_CONTROL[kind][0 if granted else 1]
    assert orc[5] == ORDER_STATUS_BY_STATUS[snapshot.status] == "IP"
    assert orc[9] == format_ts(NOW, site_zone(site.timezone))
    assert orc[16] == control_reason(REASON)
    assert unescape(orc[16].split("^")[1]) == REASON
    nte = fields(message, "NTE")
    assert unescape(nte[3]) == REASON
    assert len(message.control_id) <= 20


@pytest.mark.parametrize("site_id", ["site-a", "site-b"])
def test_the_answer_carries_the_order_as_every_order_message_does(site_id: str) -> None:
    from mappings.hl7v2.render import render_messages

    snapshot, record = journey(site_id, "journey-autologous")[7]
    site = profile(site_id)
    message = answer(snapshot, site, request(snapshot, "cancel", "declined"))
    (order_message, *_), _ = render_messages(snapshot, record, site, load_terminology(), NOW)
    for segment_id in ("PID", "OBR"):
        assert fields(message, segment_id) == fields(order_message, segment_id)
    mine, theirs = fields(message, "ORC"), fields(order_message, "ORC")
    assert mine[2:5] == theirs[2:5] and mine[12] == theirs[12]  # placer, filler, CoI, provider
    msh, order_msh = fields(message, "MSH"), fields(order_message, "MSH")
    assert msh[:7] == order_msh[:7] and msh[8] == order_msh[8] and msh[10:] == order_msh[10:]
    assert msh[9] != order_msh[9]
    # manufacturing.started sends a note (the lot) where the answer sends its reason: same structure
    ids = [s[:3] for s in message.er7.split("\r") if s]
    assert ids == [s[:3] for s in order_message.er7.split("\r") if s]


@pytest.mark.parametrize(("index", "case", "status"), [
    (2, "journey-autologous", "SC"), (13, "journey-autologous", "HD"), (20, "journey-autologous", "CM"),
    (-1, "journey-cancelled", "CA"),
])
def test_orc5_is_the_orders_current_status(index: int, case: str, status: str) -> None:
    snapshot = snapshot_at("site-a", index, case)
    message = answer(snapshot, profile("site-a"), request(snapshot, "cancel", "declined"))
    assert fields(message, "ORC")[5] == status
    validate_hl7apy(message)


def test_msh10_is_deterministic_and_unique_per_request_and_state() -> None:
    snapshot = snapshot_at("site-a", 3)
    site = profile("site-a")
    ids = {}
    for request_id in ("SR-1", "SR-2"):
        for state in ("applied", "accepted", "declined"):
            one = answer(snapshot, site, request(snapshot, "hold", state, request_id=request_id))
            again = answer(snapshot, site, request(snapshot, "hold", state, request_id=request_id))
            assert one.control_id == again.control_id == fields(one, "MSH")[9]
            assert one.control_id == control_id("site-a", snapshot.manufacturer.id, snapshot.order.order_id,
                                                answer_key(request_id, state), 0)
            ids[(request_id, state)] = one.control_id
    assert len(set(ids.values())) == len(ids)
    event_ids = {control_id("site-a", snapshot.manufacturer.id, snapshot.order.order_id, e.event_id, i)
                 for e in snapshot.events for i in range(4)}
    assert not event_ids & set(ids.values())


def test_no_answer_when_undecided_without_a_control_or_without_hl7v2() -> None:
    snapshot = snapshot_at("site-a", 7)
    terminology = load_terminology()
    for state in SITE_REQUEST_STATES:
        for kind in ("order_number", "infused"):
            req = request(snapshot, kind, state, requested={"site_order_number": "N-1"})
            assert translate_site_request(snapshot, req, profile("site-a"), terminology, NOW).messages == ()
    for state in ("pending", "awaiting-manufacturer"):
        assert translate_site_request(snapshot, request(snapshot, "cancel", state), profile("site-a"),
                                      terminology, NOW).messages == ()
    quiet = variant("site-a", enabled=False)
    declined = request(snapshot, "cancel", "declined")
    translation = translate_site_request(snapshot, declined, quiet, terminology, NOW)
    assert translation.messages == ()
    assert [r["resourceType"] for r in translation.resources] == ["Task"]


def test_without_a_reason_orc16_and_the_note_are_empty() -> None:
    snapshot = snapshot_at("site-b", 2)
    message = answer(snapshot, profile("site-b"), request(snapshot, "cancel", "applied", reason=None))
    orc = fields(message, "ORC")
    assert len(orc) <= 16 or orc[16] == ""
    assert "\rNTE|" not in message.er7
    validate_hl7apy(message)


@pytest.mark.parametrize("site_name", ["site-a 2.5.1 OML^O21", "site-a 2.4 OML^O21", "site-b 2.3 ORM^O01"])
@pytest.mark.parametrize("reason", ["x" * 1000, "|" * 400, "é" * 300 + " fin", "€" * 120, "a\r\nb\tc" * 60])
def test_a_long_reason_is_cut_in_orc16_and_sent_whole_in_nte(site_name: str, reason: str) -> None:
    site = sites()[site_name]
    snapshot = snapshot_at(site.site_id, 7)
    message = answer(snapshot, site, request(snapshot, "reschedule", "declined", reason=reason))
    validate_hl7apy(message)
    text = fields(message, "ORC")[16].split("^", 1)[1]
    assert len(text) <= CONTROL_REASON_MAX
    assert text.endswith("...") or unescape(text) == reason  # cut only when it had to be
    assert "\\" not in text.replace("\\F\\", "").replace("\\X0D\\", "").replace("\\X0A\\", "").replace(
        "\\X09\\", "").replace("\\.br\\", "")  # no escape sequence was cut
    nte = unescape(fields(message, "NTE")[3])
    if site.hl7v2.charset and "UNICODE" in site.hl7v2.charset:
        assert nte == reason


def test_text_outside_the_charset_is_transliterated_or_refused_as_for_every_message() -> None:
    snapshot = snapshot_at("site-b", 7)
    reason = "Fabrication commencée à Zürich"
    message = answer(snapshot, profile("site-b"), request(snapshot, "cancel", "declined", reason=reason))
    assert "Fabrication commencee a Zurich" in fields(message, "ORC")[16]
    assert message.refused is None
    validate_hl7apy(message)
    refusing = variant("site-b", charset_fallback="refuse")
    translation = translate_site_request(snapshot, request(snapshot, "cancel", "declined", reason=reason),
                                         refusing, load_terminology(), NOW)
    (refused,) = translation.messages
    assert refused.refused is not None and "ORC-16" in refused.refused
    assert any(i.code == "hl7v2-charset-refused" for i in translation.issues)
    assert reason not in refused.refused  # field paths, never values


def test_override_templates_see_the_answer_codes() -> None:
    site = variant("site-a", overrides={"ORC-10": "{{ codes.order_control }}-{{ codes.order_status }}"})
    snapshot = snapshot_at("site-a", 7)
    message = answer(snapshot, site, request(snapshot, "hold", "declined"))
    assert fields(message, "ORC")[10] == "UH-IP"
    validate_hl7apy(message)


def test_a_request_for_another_order_is_a_bug() -> None:
    snapshot = snapshot_at("site-a", 3)
    other = request(snapshot, "cancel", "declined").__class__(
        **{**request(snapshot, "cancel", "declined").__dict__, "order_id": "OTHER-1"})
    with pytest.raises(ValueError, match="not about this order"):
        translate_site_request(snapshot, other, profile("site-a"), load_terminology(), NOW)


@pytest.mark.parametrize(("reason", "expected"), [
    (None, ""), ("", ""), ("ok", "^ok"), ("a|b^c", "^a\\F\\b\\S\\c"),
])
def test_control_reason(reason: str | None, expected: str) -> None:
    assert control_reason(reason) == expected


@given(st.text(max_size=400), st.sampled_from([None, "8859/1", "UNICODE UTF-8"]))
@settings(max_examples=200, deadline=None)
def test_control_reason_is_bounded_and_never_cuts_an_escape(reason: str, charset: str | None) -> None:
    value = control_reason(reason, charset)
    if not reason:
        assert value == ""
        return
    assert value.startswith("^")
    text = value[1:]
    assert len(text) <= CONTROL_REASON_MAX
    assert "^" not in text and "|" not in text and "\r" not in text
    body = text.removesuffix("...") if len(text) > CONTROL_REASON_MAX - 3 else text
    unescape(body)  # whole escape sequences only
    assert body.count("\\") % 2 == 0
