"""build_ack for inbound messages: the site's version, swapped MSH, MSA-2 = the inbound MSH-10, ERR
in the version's form; every ACK validates with hl7apy STRICT and reads back with mappings.er7.ack's
parser and python-hl7."""

from __future__ import annotations

from datetime import UTC, datetime

import hl7
import pytest

from mappings.er7.ack import parse_ack
from mappings.inbound.ack import build_ack
from mappings.inbound.model import ErrorLocation, InboundMessage, InboundRefusal
from mappings.inbound.parse import parse_inbound
from tests.unit.inbound_cases import profile_for, sample, samples, validate_strict

NOW = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)


def _read(version: str, name: str, **hl7v2: object) -> InboundMessage:
    result = parse_inbound(sample(version, name), profile_for(version, **hl7v2))
    assert isinstance(result, InboundMessage)
    return result


def _check(ack: str, version: str) -> hl7.Message:
    assert ack.endswith("\r") and "\n" not in ack
    validate_strict(ack)
    parsed = hl7.parse(ack)
    assert str(parsed.segment("MSH")[12]) == version
    return parsed


@pytest.mark.parametrize(("version", "name"), samples())
def test_aa_for_every_sample(version: str, name: str) -> None:
    message = _read(version, name)
    ack = build_ack(
        message, ack_code="AA", text=None, now=NOW, profile=profile_for(version), control_id="ACK1"
    )
    parsed = _check(ack, version)
    msh = parsed.segment("MSH")
    assert (str(msh[3]), str(msh[4])) == (
        message.header.receiving_application,
        message.header.receiving_facility,
    )
    assert (str(msh[5]), str(msh[6])) == (message.sending_application, message.sending_facility)
    assert str(msh[10]) == "ACK1" and str(msh[7]) == "20261201140000"
    read = parse_ack(ack)
    assert (read.code, read.control_id, read.errors) == ("AA", message.control_id, ())
    assert str(parsed.segment("MSA")[2]) == message.control_id


@pytest.mark.parametrize("version", ["2.5.1", "2.4"])
def test_enhanced_mode_commit_then_application_ack(version: str) -> None:
    message = _read(version, "oml-o21-cancel")
    assert message.enhanced_mode
    profile = profile_for(version)
    commit = build_ack(message, ack_code="CA", text=None, now=NOW, profile=profile, control_id="C1")
    _check(commit, version)
    assert parse_ack(commit).is_commit_ack and parse_ack(commit).code == "CA"
    answer = build_ack(message, ack_code="AA", text=None, now=NOW, profile=profile, control_id="C2")
    assert parse_ack(answer).code == "AA"


def test_a_commit_ack_in_original_mode_is_a_programming_error() -> None:
    message = _read("2.3", "orm-o01-cancel")
    with pytest.raises(ValueError, match="enhanced mode"):
        build_ack(message, ack_code="CA", text=None, now=NOW, profile=profile_for("2.3"), control_id="C1")


@pytest.mark.parametrize(
    ("version", "name", "err_text_field"),
    [("2.5.1", "oml-o21-cancel", True), ("2.4", "oml-o21-cancel", False), ("2.3", "orm-o01-cancel", False)],
)
def test_ae_from_the_service_carries_code_location_and_text(
    version: str, name: str, err_text_field: bool
) -> None:
    message = _read(version, name)
    text = "CoI does not match | order ORD-1001 ^ & ~ \\"
    ack = build_ack(
        message,
        ack_code="AE",
        text=text,
        now=NOW,
        profile=profile_for(version),
        control_id="E1",
        error_code="204",
        error_location=ErrorLocation("ORC", 1, 4),
    )
    parsed = _check(ack, version)
    read = parse_ack(ack)
    assert read.code == "AE" and read.control_id == message.control_id
    assert read.text == text  # MSA-3, escaped on the wire
    (error,) = read.errors
    assert error.code == "204" and error.code_text == "Unknown key identifier"
    err = parsed.segment("ERR")
    if err_text_field:  # 2.5.1: ERR-2 location, ERR-3 code, ERR-4 severity, ERR-8 text
        assert str(err[2]) == "ORC^1^4" and error.message == text and error.severity == "E"
    else:  # 2.3/2.4: ERR-1 segment^sequence^field^code&text&HL70357
        assert str(err[1]).startswith("ORC^1^4^204&Unknown key identifier&HL70357")


def _refused(raw: str | bytes, version: str = "2.5.1", **hl7v2: object) -> InboundRefusal:
    result = parse_inbound(raw, profile_for(version, **hl7v2))
    assert isinstance(result, InboundRefusal)
    return result


@pytest.mark.parametrize(
    ("version", "raw", "code", "location"),
    [
        (
            "2.5.1",
            lambda: sample("2.5.1", "oml-o21-cancel").replace("|2.5.1|", "|2.3|", 1),
            "203",
            "MSH^1^12",
        ),
        ("2.3", lambda: sample("2.3", "orm-o01-cancel").replace("|2.3\r", "|2.5.1\r", 1), "203", "MSH^1^12"),
        (
            "2.5.1",
            lambda: sample("2.5.1", "oml-o21-cancel").replace("|CGT-GATEWAY|", "|NOT-US|", 1),
            "207",
            "MSH^1^5",
        ),
        (
            "2.5.1",
            lambda: sample("2.5.1", "oml-o21-cancel").replace("OML^O21", "ADT^A01", 1),
            "200",
            "MSH^1^9",
        ),
        (
            "2.3",
            lambda: sample("2.3", "orm-o01-cancel").replace(
                "ORC|CA|ORD-1001^CGTGW|ORD-1001^acme-bio|", "ORC|CA|||", 1
            ),
            "101",
            "ORC^1^2",
        ),
    ],
)
def test_refusal_acks_are_in_the_sites_version(version: str, raw: object, code: str, location: str) -> None:
    assert callable(raw)
    refusal = _refused(raw(), version)
    profile = profile_for(version)
    ack = build_ack(
        refusal, ack_code=refusal.ack_code, text=refusal.text, now=NOW, profile=profile, control_id="R1"
    )
    parsed = _check(ack, version)
    read = parse_ack(ack)
    assert read.code == refusal.ack_code and read.control_id == (refusal.control_id or "")
    assert [e.code for e in read.errors] == [code]
    err = parsed.segment("ERR")
    assert (str(err[2]) if version == "2.5.1" else str(err[1]).rsplit("^", 1)[0]) == location
    if refusal.header is not None and refusal.header.enhanced_mode:
        commit = build_ack(
            refusal,
            ack_code=refusal.commit_code,
            text=refusal.text,
            now=NOW,
            profile=profile,
            control_id="R2",
        )
        assert parse_ack(commit).code == refusal.commit_code


@pytest.mark.parametrize("version", ["2.5.1", "2.4", "2.3"])
@pytest.mark.parametrize("raw", [b"", b"garbage", b"MSH|^^^^|", b"x" * 5000])
def test_unreadable_messages_are_answered_from_the_profile(version: str, raw: bytes) -> None:
    refusal = _refused(raw, version, inbound={"max_message_bytes": 4096})
    assert refusal.header is None
    profile = profile_for(version, inbound={"max_message_bytes": 4096})
    ack = build_ack(refusal, ack_code="AR", text=refusal.text, now=NOW, profile=profile, control_id="U1")
    parsed = _check(ack, version)
    msh = parsed.segment("MSH")
    assert (
        str(msh[3]) == profile.hl7v2.sending_application
        and str(msh[5]) == profile.hl7v2.receiving_application
    )
    read = parse_ack(ack)
    assert read.code == "AR" and read.control_id == "UNREADABLE"
    assert [e.code for e in read.errors] == [refusal.error_code]


def test_an_absurd_control_id_is_refused_and_not_echoed_whole() -> None:
    long_id = "X" * 100_000
    refusal = _refused(sample("2.5.1", "oml-o21-cancel").replace("|IN-CA-1|", f"|{long_id}|", 1))
    assert (refusal.ack_code, refusal.error_code) == ("AR", "102")
    ack = build_ack(refusal, ack_code="AR", text=refusal.text, now=NOW, profile=profile_for("2.5.1"),
                    control_id="L1")
    assert len(ack) < 1000
    assert parse_ack(ack).control_id == "X" * 199
    _check(ack, "2.5.1")
