"""ACK parsing and building: both acknowledgment modes, custom delimiters, escaping, hl7apy STRICT."""

from __future__ import annotations

from datetime import UTC, datetime

import hl7
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.parser import parse_message, parse_segments
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.er7.ack import AckParseError, build_ack, parse_ack, read_header

NOW = datetime(2026, 11, 21, 12, 30, 5, tzinfo=UTC)


def _received(version: str = "2.5.1", *, enhanced: bool = False, msh9: str | None = None) -> str:
    msh9 = msh9 or ("ORM^O01" if version == "2.3" else "OML^O21^OML_O21")
    tail = "|||AL|NE||UNICODE UTF-8" if enhanced else ""
    return (f"MSH|^~\\&|CGT_GW|CGT|SITE_EHR|SITE_A|20261121120000||{msh9}|MSG00042|P|{version}{tail}\r"
            "PID|1||MRN123^^^SITE_A^MR||DOE^JANE\r")


def _strict_251(er7: str) -> None:
    message = parse_message(er7, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert message.validate() is True


def _strict_ack(er7: str, version: str) -> None:
    # hl7apy derives the structure from MSH-9.3, which does not exist up to 2.3: name it ourselves.
    message = Message("ACK", version=version, validation_level=VALIDATION_LEVEL.STRICT)
    message.children = parse_segments(er7, version, None, VALIDATION_LEVEL.STRICT, message.reference, True)
    assert message.validate() is True


def test_aa_original_mode_swaps_sender_and_receiver_and_echoes_control_id() -> None:
    ack = build_ack(_received(), "AA", control_id="ACK1", now=NOW)
    _strict_251(ack)
    assert ack.endswith("\r") and "\n" not in ack
    msh = hl7.parse(ack).segment("MSH")
    assert str(msh[3]) == "SITE_EHR" and str(msh[4]) == "SITE_A"
    assert str(msh[5]) == "CGT_GW" and str(msh[6]) == "CGT"
    assert str(msh[7]) == "20261121123005"
    assert str(msh[9]) == "ACK^O21^ACK"
    assert str(msh[10]) == "ACK1" and str(msh[11]) == "P" and str(msh[12]) == "2.5.1"
    assert len(msh) <= 13  # nothing after MSH-12 in original mode
    parsed = parse_ack(ack)
    assert (parsed.code, parsed.control_id, parsed.text, parsed.errors) == ("AA", "MSG00042", None, ())
    assert "ERR" not in ack


def test_ae_carries_err_with_table_0357_code_severity_and_user_message() -> None:
    ack = build_ack(_received(), "AE", text="Unknown product CART-XX", error_code="103", now=NOW)
    _strict_251(ack)
    parsed = parse_ack(ack)
    assert parsed.code == "AE" and parsed.text == "Unknown product CART-XX"
    (error,) = parsed.errors
    assert (error.code, error.code_text, error.severity, error.message) == (
        "103", "Table value not found", "E", "Unknown product CART-XX")
    assert parsed.detail == "Unknown product CART-XX"
    # an independent parser sees the same ERR fields
    err = hl7.parse(ack).segment("ERR")
    assert str(err[3]) == "103^Table value not found^HL70357" and str(err[4]) == "E"


def test_ar_defaults_to_application_internal_error() -> None:
    parsed = parse_ack(build_ack(_received(), "AR", now=NOW))
    assert parsed.code == "AR"
    assert [(e.code, e.severity) for e in parsed.errors] == [("207", "E")]
    assert parsed.detail == "[207] Application internal error"


@pytest.mark.parametrize("code", ["CA", "CE", "CR"])
def test_enhanced_mode_commit_acks(code: str) -> None:
    ack = build_ack(_received(enhanced=True), code, text="queued" if code == "CA" else "store down",
                    now=NOW)
    _strict_251(ack)
    parsed = parse_ack(ack)
    assert parsed.code == code and parsed.is_commit_ack and parsed.control_id == "MSG00042"
    assert parsed.header.accept_ack_type == "NE" and parsed.header.application_ack_type == "NE"
    assert parsed.header.character_set == "UNICODE UTF-8"
    assert bool(parsed.errors) is (code != "CA")


def test_application_ack_in_enhanced_mode_is_allowed() -> None:
    parsed = parse_ack(build_ack(_received(enhanced=True), "AA", now=NOW))
    assert parsed.code == "AA" and not parsed.is_commit_ack


def test_commit_ack_for_an_original_mode_message_is_refused() -> None:
    with pytest.raises(ValueError, match="enhanced mode"):
        build_ack(_received(), "CA")


@pytest.mark.parametrize("code", ["", "XX", "OK"])
def test_unknown_ack_code_is_refused(code: str) -> None:
    with pytest.raises(ValueError, match="acknowledgment code"):
        build_ack(_received(), code)


def test_control_id_too_long_is_refused() -> None:
    with pytest.raises(ValueError, match="20 characters"):
        build_ack(_received(), "AA", control_id="X" * 21)


def test_generated_control_id_is_unique_and_short() -> None:
    ids = {str(hl7.parse(build_ack(_received(), "AA")).segment("MSH")[10]) for _ in range(50)}
    assert len(ids) == 50 and all(0 < len(i) <= 20 for i in ids)


def test_version_2_3_uses_two_component_msh9_and_err1() -> None:
    ack = build_ack(_received("2.3"), "AE", text="Site rejects", error_code="200", now=NOW)
    _strict_ack(ack, "2.3")
    assert "|ACK^O01|" in ack
    assert "ERR|^^^200&Unsupported message type&HL70357" in ack
    parsed = parse_ack(ack)
    assert parsed.header.version == "2.3" and parsed.text == "Site rejects"
    assert [(e.code, e.code_text, e.severity) for e in parsed.errors] == [
        ("200", "Unsupported message type", None)]


def test_version_2_4_validates_strictly() -> None:
    ack = build_ack(_received("2.4", msh9="ORM^O01^ORM_O01"), "AR", text="bad", now=NOW)
    _strict_ack(ack, "2.4")
    parse_message(ack, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True).validate()
    assert "|ACK^O01^ACK|" in ack


def test_custom_delimiters_are_honoured_both_ways() -> None:
    received = "MSH#*%$@#CGT_GW#CGT#EHR#SITE#20261121120000##ORM*O01#C1#P#2.5.1\rPID#1\r"
    ack = build_ack(received, "AE", text="a#b*c%d$e@f|g^h", now=NOW)
    assert ack.startswith("MSH#*%$@#EHR#SITE#CGT_GW#CGT#")
    assert "#ACK*O01*ACK#" in ack
    parsed = parse_ack(ack)
    assert parsed.text == "a#b*c%d$e@f|g^h"
    assert parsed.errors[0].message == "a#b*c%d$e@f|g^h"
    assert parsed.header.delimiters.field == "#" and parsed.header.delimiters.escape == "$"


def test_text_is_escaped_and_long_text_kept_whole_in_err8() -> None:
    text = "Dose 5\\10 | ratio ^ A&B ~ x\r\nnext line " + "z" * 100
    ack = build_ack(_received(), "AE", text=text, now=NOW)
    _strict_251(ack)
    assert ack.count("\r") == 3  # MSH, MSA, ERR: the CR/LF in the text is escaped
    assert "\\E\\" in ack and "\\F\\" in ack and "\\S\\" in ack and "\\T\\" in ack and "\\R\\" in ack
    parsed = parse_ack(ack)
    assert parsed.text == text[:80]
    assert parsed.errors[0].message == text


@settings(max_examples=150, deadline=None)
@given(st.text(min_size=1, max_size=200))
def test_any_text_survives_build_and_parse(text: str) -> None:
    parsed = parse_ack(build_ack(_received(), "AE", text=text, now=NOW))
    assert parsed.errors[0].message == text
    assert parsed.text == text[:80]


def test_parse_ack_from_a_foreign_engine_with_lf_separators_bytes_and_lowercase_code() -> None:
    raw = ("MSH|^~\\&|EHR|SITE|CGT_GW|CGT|20261121||ACK^O21^ACK|9|P|2.5.1\n"
           "MSA|ae|MSG7|Patient \\T\\ order mismatch\n"
           "ERR||PID^1^3|204^Unknown key identifier^HL70357|E||||MRN not on file\\X0D\\retry later\n")
    parsed = parse_ack(raw.encode("utf-8"))
    assert parsed.code == "AE" and parsed.control_id == "MSG7"
    assert parsed.text == "Patient & order mismatch"
    assert parsed.errors[0].message == "MRN not on file\rretry later"
    assert parsed.detail == "Patient & order mismatch; [204] MRN not on file\rretry later"


def test_parse_ack_2_3_err1_with_several_repetitions() -> None:
    raw = ("MSH|^~\\&|EHR|SITE|GW|CGT|20261121||ACK|9|P|2.3\r"
           "MSA|AR|MSG8\rERR|PID^1^3^101&Required field missing~OBR^1^4^103&Table value not found\r")
    parsed = parse_ack(raw)
    assert [(e.code, e.code_text) for e in parsed.errors] == [
        ("101", "Required field missing"), ("103", "Table value not found")]


def test_parse_ack_undecodable_bytes_do_not_break_it() -> None:
    raw = b"MSH|^~\\&|EHR|SITE|GW|CGT|20261121||ACK|9|P|2.5.1\rMSA|AE|MSG9|Caf\xe9 closed\r"
    parsed = parse_ack(raw)
    assert parsed.code == "AE" and parsed.text is not None and parsed.text.startswith("Caf")


@pytest.mark.parametrize("raw, reason", [
    ("", "empty"),
    ("PID|1\rMSA|AA|1\r", "MSH"),
    ("MSH|^~\\&|A|B|C|D|20261121||ACK|9|P|2.5.1\r", "no MSA"),
    ("MSH|^~\\&|A|B|C|D|20261121||ACK|9|P|2.5.1\rMSA||1\r", "MSA-1"),
    ("MSH|^^^^|A\rMSA|AA|1\r", "delimiters"),
])
def test_parse_ack_rejects_what_is_not_an_ack(raw: str, reason: str) -> None:
    with pytest.raises(AckParseError, match=reason):
        parse_ack(raw)


def test_read_header_of_a_received_message() -> None:
    header = read_header(_received(enhanced=True))
    assert (header.message_code, header.trigger_event, header.control_id, header.version) == (
        "OML", "O21", "MSG00042", "2.5.1")
    assert header.enhanced_mode


@pytest.mark.parametrize(("version", "expected"), [("2.5.1", "ORC^1^2"), ("2.3", "ORC^1^2^101&")])
def test_error_location_and_version_override(version: str, expected: str) -> None:
    other = "2.3" if version == "2.5.1" else "2.5.1"
    ack = build_ack(_received(other), "AE", text="no order number", error_code="101", now=NOW,
                    error_location=("ORC", 1, 2), version=version)
    msh, err = hl7.parse(ack).segment("MSH"), hl7.parse(ack).segment("ERR")
    assert str(msh[12]) == version
    assert (str(err[2]) if version == "2.5.1" else str(err[1])).startswith(expected)
    if version == "2.5.1":
        _strict_251(ack)
    else:
        _strict_ack(ack, version)
    assert [e.code for e in parse_ack(ack).errors] == ["101"]


def test_a_whole_segment_location_has_no_field() -> None:
    ack = build_ack(_received(), "AE", error_code="100", now=NOW, error_location=("ORC", 1, 0))
    assert str(hl7.parse(ack).segment("ERR")[2]) == "ORC^1"
    _strict_251(ack)
