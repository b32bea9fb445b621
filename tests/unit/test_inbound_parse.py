"""parse_inbound: every sample reads into the expected request; every refusal path answers the right
ACK code, table 0357 code and field; escapes, garbage, huge messages and fuzz never raise."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mappings.inbound.model import ErrorLocation, InboundMessage, InboundRefusal, OrderNumber
from mappings.inbound.parse import parse_inbound
from tests.unit.inbound_cases import profile_for, sample, samples, validate_strict

NY, CHI = ZoneInfo("America/New_York"), ZoneInfo("America/Chicago")
COI = "CHA999923A1B2C3M"

# (version, sample) -> fields the request must have (beyond order_ref ORD-1001, MSH-10, type, version)
EXPECTED: dict[tuple[str, str], dict[str, object]] = {}
for _v, _prefix in (("2.5.1", "oml-o21"), ("2.4", "oml-o21"), ("2.3", "orm-o01")):
    _zone = CHI if _v == "2.3" else NY
    EXPECTED[(_v, f"{_prefix}-cancel")] = {
        "kind": "cancel",
        "order_control": "CA",
        "coi": COI,
        "reason": "Patient declined further treatment",
    }
    EXPECTED[(_v, f"{_prefix}-hold")] = {
        "kind": "hold",
        "order_control": "HD",
        "reason": "Patient has an active infection",
    }
    EXPECTED[(_v, f"{_prefix}-release-hold")] = {
        "kind": "release_hold",
        "order_control": "RL",
        "reason": None,
    }
    EXPECTED[(_v, f"{_prefix}-change")] = {
        "kind": "change",
        "order_control": "XO",
        "appointment": None,
        "requested_start": datetime(2026, 12, 15, 9, tzinfo=_zone),
    }
    EXPECTED[(_v, f"{_prefix}-order-number")] = {
        "kind": "order_number",
        "site_order_number": "SA-778812",
        "filler_order_number": OrderNumber("SA-778812", "EPIC"),
    }
    for _trigger, _action, _appt in (
        ("s12", "booked", "apheresis"),
        ("s13", "rescheduled", "apheresis"),
        ("s14", "modified", "infusion"),
        ("s15", "cancelled", "apheresis"),
    ):
        EXPECTED[(_v, f"siu-{_trigger}")] = {
            "kind": "reschedule",
            "appointment_action": _action,
            "appointment": _appt,
            "requested_start": datetime(2026, 12, 15, 9, tzinfo=_zone),
            "requested_end": datetime(2026, 12, 15, 13, tzinfo=_zone),
            "reason": "Moved at the patient's request",
            # ORC-4 sites: SIU has no ORC, so no CoI place (coi None, not missing); 2.3 site-b: ZCG
            "coi": COI if _v == "2.3" else None,
            "coi_missing": False,
        }
EXPECTED[("2.5.1", "orm-o01-cancel")] = {"kind": "cancel", "order_control": "CA", "coi": COI}
_RXA3 = datetime(2026, 12, 20, 10, 30, tzinfo=timezone(timedelta(hours=-5)))
EXPECTED[("2.5.1", "ras-o17-infused")] = {"kind": "infused", "administered_at": _RXA3, "coi": COI}
EXPECTED[("2.4", "ras-o17-infused")] = {"kind": "infused", "administered_at": _RXA3, "coi": COI}
EXPECTED[("2.3", "oru-r01-infused")] = {
    "kind": "infused",
    "administered_at": datetime(2026, 12, 20, 10, 30, tzinfo=CHI),
}


def test_every_sample_has_expectations() -> None:
    assert sorted(EXPECTED) == samples()


@pytest.mark.parametrize(("version", "name"), sorted(EXPECTED))
def test_sample_validates_strict_and_parses_to_the_expected_request(version: str, name: str) -> None:
    er7 = sample(version, name)
    validate_strict(er7)
    result = parse_inbound(er7.encode(), profile_for(version))
    assert isinstance(result, InboundMessage), result
    assert result.order_ref == "ORD-1001"
    assert result.version == version
    assert result.control_id.startswith("IN-")
    assert result.message_type == name.split("-")[0].upper() + "^" + name.split("-")[1].upper()
    for field, value in EXPECTED[(version, name)].items():
        assert getattr(result, field) == value, field
    if result.kind != "reschedule":
        assert result.coi == COI and not result.coi_missing
    for moment in (result.requested_start, result.requested_end, result.administered_at):
        assert moment is None or moment.tzinfo is not None
    assert result.raw == er7.rstrip("\r")


def test_str_and_bytes_read_the_same() -> None:
    er7 = sample("2.5.1", "oml-o21-cancel")
    assert parse_inbound(er7, profile_for("2.5.1")) == parse_inbound(er7.encode(), profile_for("2.5.1"))


def test_lf_separators_and_mllp_leftovers_are_tolerated() -> None:
    er7 = sample("2.3", "orm-o01-hold").replace("\r", "\n")
    result = parse_inbound(b"\x0b" + er7.encode() + b"\x1c\r", profile_for("2.3"))
    assert isinstance(result, InboundMessage) and result.kind == "hold"


def test_change_date_target_comes_from_the_profile() -> None:
    result = parse_inbound(
        sample("2.5.1", "oml-o21-change"), profile_for("2.5.1", inbound={"change_appointment": "infusion"})
    )
    assert isinstance(result, InboundMessage) and result.appointment == "infusion"


def test_siu_service_codes_come_from_the_profile() -> None:
    er7 = sample("2.5.1", "siu-s12").replace("apheresis^Apheresis collection^99CGT", "APH1^Apheresis^L")
    er7 = er7.replace("ORD-1001-APH", "APPT-77")  # no suffix to fall back on
    refused = parse_inbound(er7, profile_for("2.5.1"))
    assert isinstance(refused, InboundRefusal)
    assert (refused.ack_code, refused.error_code, refused.location) == (
        "AE",
        "103",
        ErrorLocation("SCH", 1, 7),
    )
    mapped = parse_inbound(er7, profile_for("2.5.1", inbound={"appointment_codes": {"apheresis": ["APH1"]}}))
    assert isinstance(mapped, InboundMessage) and mapped.appointment == "apheresis"
    assert mapped.placer_appointment_id == "APPT-77"


def test_timestamps_without_offset_are_in_the_site_zone_with_offset_kept() -> None:
    er7 = sample("2.5.1", "oml-o21-change")
    local = parse_inbound(er7, profile_for("2.5.1"))
    assert isinstance(local, InboundMessage) and local.requested_start is not None
    assert local.requested_start.astimezone(UTC) == datetime(2026, 12, 15, 14, tzinfo=UTC)
    offset = parse_inbound(er7.replace("|20261215090000\r", "|20261215090000+0100\r"), profile_for("2.5.1"))
    assert isinstance(offset, InboundMessage) and offset.requested_start is not None
    assert offset.requested_start.astimezone(UTC) == datetime(2026, 12, 15, 8, tzinfo=UTC)


def test_escaped_characters_are_unescaped() -> None:
    er7 = sample("2.5.1", "oml-o21-hold").replace(
        "Patient has an active infection", r"Fever \F\ 39\S\C \T\ cough \R\ \E\ end\X0A\ok"
    )
    er7 = er7.replace("ORC|HD|ORD-1001^", r"ORC|HD|ORD\T\1001^", 1)
    result = parse_inbound(er7, profile_for("2.5.1"))
    assert isinstance(result, InboundMessage)
    assert result.reason == "Fever | 39^C & cough ~ \\ end\nok"
    assert result.order_ref == "ORD&1001"


def test_the_messages_own_delimiters_are_used() -> None:
    er7 = sample("2.3", "orm-o01-cancel").replace("|", "#").replace("^~\\&", "$*\\%", 1).replace("^", "$")
    er7 = er7.replace("MSH#$*\\%#", "MSH#$*\\%#", 1)
    result = parse_inbound(er7, profile_for("2.3"))
    assert isinstance(result, InboundMessage), result
    assert result.order_ref == "ORD-1001" and result.placer_order_number == OrderNumber("ORD-1001", "CGTGW")
    assert result.coi == COI


# --- refusals -------------------------------------------------------------------------------------------


def _refusal(er7: str | bytes, version: str = "2.5.1", **hl7v2: object) -> InboundRefusal:
    result = parse_inbound(er7, profile_for(version, **hl7v2))
    assert isinstance(result, InboundRefusal), result
    return result


def _drop_field(er7: str, segment: str, field: int) -> str:
    lines = er7.split("\r")
    for i, line in enumerate(lines):
        if line.startswith(segment + "|"):
            fields = line.split("|")
            fields[field] = ""
            lines[i] = "|".join(fields)
    return "\r".join(lines)


@pytest.mark.parametrize(
    ("version", "name", "edit", "expected"),
    [
        (
            "2.5.1",
            "oml-o21-cancel",
            lambda m: m.replace("|2.5.1|", "|2.4|", 1),
            ("AR", "203", ("MSH", 1, 12)),
        ),
        (
            "2.3",
            "orm-o01-cancel",
            lambda m: m.replace("|2.3\r", "|2.5.1\r", 1),
            ("AR", "203", ("MSH", 1, 12)),
        ),
        (
            "2.5.1",
            "oml-o21-cancel",
            lambda m: m.replace("|CGT-GATEWAY|CGTGW|", "|OTHER|CGTGW|", 1),
            ("AR", "207", ("MSH", 1, 5)),
        ),
        (
            "2.5.1",
            "oml-o21-cancel",
            lambda m: m.replace("|CGT-GATEWAY|CGTGW|", "|CGT-GATEWAY|ELSEWHERE|", 1),
            ("AR", "207", ("MSH", 1, 6)),
        ),
        (
            "2.5.1",
            "oml-o21-cancel",
            lambda m: m.replace("|P|2.5.1|", "|T|2.5.1|", 1),
            ("AR", "202", ("MSH", 1, 11)),
        ),
        ("2.5.1", "oml-o21-cancel", lambda m: m.replace("|IN-CA-1|", "||", 1), ("AR", "101", ("MSH", 1, 10))),
        (
            "2.5.1",
            "oml-o21-cancel",
            lambda m: m.replace("OML^O21^OML_O21", "ADT^A01^ADT_A01", 1),
            ("AR", "200", ("MSH", 1, 9)),
        ),
        (
            "2.5.1",
            "oml-o21-cancel",
            lambda m: m.replace("OML^O21^OML_O21", "OML^O33^OML_O33", 1),
            ("AR", "201", ("MSH", 1, 9)),
        ),
        (
            "2.5.1",
            "siu-s12",
            lambda m: m.replace("SIU^S12^SIU_S12", "SIU^S17^SIU_S12", 1),
            ("AR", "201", ("MSH", 1, 9)),
        ),
        (
            "2.3",
            "orm-o01-cancel",
            lambda m: m.replace("|ORM^O01|", "|OML^O21|", 1),
            ("AR", "200", ("MSH", 1, 9)),
        ),
        (
            "2.3",
            "orm-o01-cancel",
            lambda m: m.replace("|ORM^O01|", "|RAS^O17|", 1),
            ("AR", "200", ("MSH", 1, 9)),
        ),
        (
            "2.5.1",
            "ras-o17-infused",
            lambda m: m.replace("RAS^O17^RAS_O17", "ORU^R01^ORU_R01", 1),
            ("AR", "200", ("MSH", 1, 9)),
        ),
        (
            "2.5.1",
            "oml-o21-cancel",
            lambda m: _drop_field(_drop_field(m, "ORC", 2), "ORC", 3),
            ("AE", "101", ("ORC", 1, 2)),
        ),
        ("2.5.1", "oml-o21-cancel", lambda m: _drop_field(m, "ORC", 1), ("AE", "101", ("ORC", 1, 1))),
        (
            "2.5.1",
            "oml-o21-cancel",
            lambda m: m.replace("ORC|CA|", "ORC|NW|", 1),
            ("AE", "103", ("ORC", 1, 1)),
        ),
        (
            "2.5.1",
            "oml-o21-cancel",
            lambda m: "\r".join(s for s in m.split("\r") if not s.startswith("ORC")),
            ("AE", "100", ("ORC", 1, 0)),
        ),
        ("2.5.1", "oml-o21-change", lambda m: _drop_field(m, "TQ1", 7), ("AE", "101", ("TQ1", 1, 7))),
        ("2.3", "orm-o01-change", lambda m: _drop_field(m, "ORC", 7), ("AE", "101", ("ORC", 1, 7))),
        (
            "2.5.1",
            "oml-o21-change",
            lambda m: m.replace("|20261215090000\r", "|2026-12-15\r"),
            ("AE", "102", ("TQ1", 1, 7)),
        ),
        (
            "2.5.1",
            "oml-o21-change",
            lambda m: m.replace("|20261215090000\r", "|20261315090000\r"),
            ("AE", "102", ("TQ1", 1, 7)),
        ),
        ("2.5.1", "oml-o21-order-number", lambda m: _drop_field(m, "ORC", 3), ("AE", "101", ("ORC", 1, 3))),
        ("2.5.1", "oml-o21-order-number", lambda m: _drop_field(m, "ORC", 2), ("AE", "101", ("ORC", 1, 2))),
        ("2.5.1", "ras-o17-infused", lambda m: _drop_field(m, "RXA", 3), ("AE", "101", ("RXA", 1, 3))),
        (
            "2.5.1",
            "siu-s13",
            lambda m: _drop_field(_drop_field(_drop_field(m, "AIS", 4), "TQ1", 7), "SCH", 11),
            ("AE", "101", ("AIS", 1, 4)),
        ),
        (
            "2.5.1",
            "siu-s13",
            lambda m: _drop_field(
                _drop_field(_drop_field(_drop_field(m, "SCH", 26), "SCH", 27), "SCH", 1), "SCH", 2
            ),
            ("AE", "101", ("SCH", 1, 26)),
        ),
        (
            "2.3",
            "oru-r01-infused",
            lambda m: m.replace("OBX|1|ST|infused^", "OBX|1|ST|glucose^", 1),
            ("AE", "103", ("OBX", 1, 3)),
        ),
    ],
)
def test_refusal_paths(
    version: str, name: str, edit: object, expected: tuple[str, str, tuple[str, int, int]]
) -> None:
    assert callable(edit)
    refused = _refusal(edit(sample(version, name)), version)
    assert (refused.ack_code, refused.error_code, refused.location) == (
        expected[0],
        expected[1],
        ErrorLocation(*expected[2]),
    )
    assert refused.text
    assert refused.header is not None and refused.control_id in (None, refused.header.control_id)
    assert refused.commit_code == ("CR" if expected[0] == "AR" else "CE")


def test_siu_ending_in_cancel_needs_no_start() -> None:
    er7 = _drop_field(_drop_field(_drop_field(sample("2.5.1", "siu-s15"), "AIS", 4), "TQ1", 7), "SCH", 11)
    result = parse_inbound(er7, profile_for("2.5.1"))
    assert isinstance(result, InboundMessage) and result.appointment_action == "cancelled"
    assert result.requested_start is None


@pytest.mark.parametrize(
    ("version", "name", "location", "edit"),
    [
        ("2.5.1", "oml-o21-cancel", "ORC-4", lambda m: _drop_field(m, "ORC", 4)),
        ("2.5.1", "ras-o17-infused", "ORC-4", lambda m: _drop_field(m, "ORC", 4)),
        (
            "2.3",
            "orm-o01-cancel",
            "ZCG",
            lambda m: "\r".join(s for s in m.split("\r") if not s.startswith("ZCG")),
        ),
        ("2.3", "oru-r01-infused", "ZCG", lambda m: _drop_field(m, "ZCG", 2)),
        ("2.5.1", "oml-o21-cancel", "OBX", lambda m: m),  # the profile wants a CoI OBX; none is there
    ],
)
def test_absent_coi_is_flagged_not_refused(version: str, name: str, location: str, edit: object) -> None:
    assert callable(edit)
    result = parse_inbound(edit(sample(version, name)), profile_for(version, coi_location=location))
    assert isinstance(result, InboundMessage)
    assert result.coi is None and result.coi_missing


def test_coi_from_an_obx_when_the_profile_says_so() -> None:
    er7 = (
        sample("2.5.1", "oml-o21-cancel").rstrip("\r")
        + "\rOBX|1|ST|coi^Chain of Identity identifier^99CGT||"
        + COI
        + "||||||F\r"
    )
    result = parse_inbound(er7, profile_for("2.5.1", coi_location="OBX"))
    assert isinstance(result, InboundMessage) and result.coi == COI and not result.coi_missing


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\x00",
        b"\xff\xfe\xfd",
        b"hello",
        b"MSH",
        b"MSH|",
        b"MSH|^~",
        b"MSH|^^^^|",
        b"MSHa^~\\&|x",
        b"MSH|^~\\&",
        b"MSH|^~\\&|\r",
        b"\x0b\x1c\r",
        b"PID|1\rMSH|^~\\&|A\r",
        "MSH|^~\\&|\u00e9\r".encode("latin-1"),
    ],
)
def test_garbage_is_refused_ar(garbage: bytes) -> None:
    refused = _refusal(garbage)
    assert refused.ack_code == "AR"


def test_a_message_over_the_size_limit_is_refused_before_parsing() -> None:
    big = sample("2.5.1", "oml-o21-cancel") + "NTE|2|L|" + "x" * 2_000_000 + "\r"
    for raw in (big, big.encode()):
        refused = _refusal(raw)
        assert (refused.ack_code, refused.error_code, refused.header) == ("AR", "207", None)
    small = parse_inbound(sample("2.5.1", "oml-o21-cancel"), profile_for("2.5.1"), max_bytes=100)
    assert isinstance(small, InboundRefusal) and "100 bytes" in small.text


def test_absurd_segment_and_field_counts_cost_linear_time() -> None:
    base = sample("2.5.1", "oml-o21-cancel")
    many_segments = base + "NTE|1\r" * 200_000  # ~1.2 MB
    many_fields = base + "NTE" + "|" * 900_000 + "\r"
    many_components = base.replace("ORC|CA|ORD-1001", "ORC|CA|" + "^" * 900_000 + "ORD-1001", 1)
    start = time.perf_counter()
    too_many = parse_inbound(many_segments, profile_for("2.5.1"), max_bytes=4_000_000)
    assert isinstance(too_many, InboundRefusal) and too_many.ack_code == "AR"  # over max_segments
    assert "segments" in too_many.text
    assert isinstance(parse_inbound(many_fields, profile_for("2.5.1"), max_bytes=4_000_000), InboundMessage)
    fallback = parse_inbound(many_components, profile_for("2.5.1"), max_bytes=4_000_000)
    assert isinstance(fallback, InboundMessage)  # ORC-2.1 empty: the order is found by ORC-3.1
    assert fallback.placer_order_number is None and fallback.order_ref == "ORD-1001"
    assert time.perf_counter() - start < 10  # generous: linear work is well under a second


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_parse_inbound_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    assert isinstance(parse_inbound(raw, profile_for("2.5.1")), InboundMessage | InboundRefusal)


_MSH = "MSH|^~\\&|EPIC|SITE-A|CGT-GATEWAY|CGTGW|20261201||"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from("|^~\\&\r\nMSHORCTQ1SIURAS0123456789.+-XOCANA "), max_size=400))
def test_parse_inbound_never_raises_behind_a_valid_msh_start(tail: str) -> None:
    result = parse_inbound(_MSH + tail, profile_for("2.5.1"))
    assert isinstance(result, InboundMessage | InboundRefusal)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(samples()), st.integers(min_value=0, max_value=10_000), st.binary(max_size=8))
def test_parse_inbound_never_raises_on_mutated_samples(
    case: tuple[str, str], position: int, junk: bytes
) -> None:
    raw = sample(*case).encode()
    cut = position % (len(raw) + 1)
    mutated = raw[:cut] + junk + raw[cut + len(junk) :]
    assert isinstance(parse_inbound(mutated, profile_for(case[0])), InboundMessage | InboundRefusal)


def test_2_3_oru_without_orc_finds_the_order_by_obr() -> None:
    er7 = "\r".join(s for s in sample("2.3", "oru-r01-infused").split("\r") if not s.startswith("ORC"))
    result = parse_inbound(er7, profile_for("2.3"))
    assert isinstance(result, InboundMessage) and result.order_ref == "ORD-1001"
    assert result.coi == COI  # site-b: ZCG


def test_the_infusion_code_comes_from_the_profile() -> None:
    er7 = sample("2.3", "oru-r01-infused").replace("OBX|1|ST|infused^", "OBX|1|ST|CTINF^", 1)
    assert isinstance(parse_inbound(er7, profile_for("2.3")), InboundRefusal)
    result = parse_inbound(er7, profile_for("2.3", inbound={"infused_obx_code": "CTINF"}))
    assert isinstance(result, InboundMessage) and result.kind == "infused"


def test_the_inbound_profile_section_is_validated() -> None:
    with pytest.raises(ValueError, match="max_message_bytes"):
        profile_for("2.5.1", inbound={"max_message_bytes": 10})
    with pytest.raises(ValueError, match="Extra inputs"):
        profile_for("2.5.1", inbound={"listen": True})
    with pytest.raises(ValueError, match="change_appointment"):
        profile_for("2.5.1", inbound={"change_appointment": "whenever"})
