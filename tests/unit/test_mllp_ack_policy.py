"""The MLLP sender's ACK policy as a pure function: never a false 'delivered'."""

from __future__ import annotations

import pytest

from adapters.mllp.ack_policy import awaits_application_ack, judge_ack
from mappings.er7.ack import parse_ack


def ack(code: str, control_id: str = "C1", extra: str = "") -> str:
    return f"MSH|^~\\&|EHR|SITE|GW|CGT|20261121||ACK^O21^ACK|A9|P|2.5.1\rMSA|{code}|{control_id}{extra}\r"


@pytest.mark.parametrize("code, status", [
    ("AA", "delivered"), ("CA", "delivered"), ("AR", "retry"), ("CR", "retry"),
    ("AE", "dead"), ("CE", "dead"),
])
def test_table_0008_codes(code: str, status: str) -> None:
    outcome = judge_ack("C1", parse_ack(ack(code)))
    assert outcome.status == status and outcome.ack_code == code and outcome.warning is None


def test_ae_keeps_the_ack_text_for_the_dead_letter() -> None:
    raw = ack("AE", extra="|Unknown product\rERR|||103^Table value not found^HL70357|E||||OBR-4 CART-XX")
    outcome = judge_ack("C1", parse_ack(raw))
    assert outcome.status == "dead"
    assert outcome.detail == "Unknown product; [103] OBR-4 CART-XX"


def test_ar_without_text_still_says_why() -> None:
    assert judge_ack("C1", parse_ack(ack("AR"))).detail == "rejected with AR"


@pytest.mark.parametrize("code", ["AA", "CA", "AE"])
def test_msa2_mismatch_is_never_delivered_and_warns(code: str) -> None:
    outcome = judge_ack("C1", parse_ack(ack(code, control_id="C0")))
    assert outcome.status == "retry"
    assert outcome.warning is not None and "'C0'" in outcome.warning and "'C1'" in outcome.warning


def test_unknown_code_is_retried_with_a_warning() -> None:
    outcome = judge_ack("C1", parse_ack(ack("OK")))
    assert outcome.status == "retry" and outcome.warning is not None


def test_commit_code_in_the_application_ack_is_out_of_place() -> None:
    outcome = judge_ack("C1", parse_ack(ack("CA")), stage="application")
    assert outcome.status == "retry" and outcome.warning is not None
    assert judge_ack("C1", parse_ack(ack("AA")), stage="application").status == "delivered"


def test_aa_with_a_warning_err_is_delivered_with_the_warning_kept() -> None:
    raw = ack("AA", extra="\rERR|||0^Message accepted^HL70357|W||||Unknown local code mapped to default")
    outcome = judge_ack("C1", parse_ack(raw))
    assert outcome.status == "delivered"
    assert outcome.warning is not None and "Unknown local code" in outcome.warning


def test_waiting_for_the_application_ack_only_after_ca_and_when_asked() -> None:
    assert awaits_application_ack(parse_ack(ack("CA")), wait_for_application_ack=True)
    assert not awaits_application_ack(parse_ack(ack("CA")), wait_for_application_ack=False)
    assert not awaits_application_ack(parse_ack(ack("AA")), wait_for_application_ack=True)
