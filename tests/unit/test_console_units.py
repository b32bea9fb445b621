"""The console's pure pieces: HL7v2 field labels, the sparkline, session cookies and CSRF tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.auth import Principal
from gateway.console.hl7_view import field_names, segments_of
from gateway.console.queues import sparkline_svg
from gateway.console.session import SessionKeys

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
SITE_A = Principal("site", "site-a", "site-a demo")


def test_msh_fields_are_numbered_from_the_field_separator() -> None:
    [msh, orc] = segments_of("MSH|^~\\&|GW|F|EPIC|S|20261202||OML^O21^OML_O21|CTRL1|P|2.5.1\rORC|NW|P1||G1")
    labels = {f.label: f.value for f in msh.fields}
    assert labels["MSH-1 Field Separator"] == "|" and labels["MSH-2 Encoding Characters"] == "^~\\&"
    assert labels["MSH-10 Message Control ID"] == "CTRL1" and labels["MSH-12 Version ID"] == "2.5.1"
    assert [(f.label, f.value) for f in orc.fields] == [("ORC-1 Order Control", "NW"),
                                                         ("ORC-2 Placer Order Number", "P1"),
                                                         ("ORC-4 Placer Group Number", "G1")]


def test_unknown_segments_and_fields_are_numbered_without_a_name() -> None:
    [seg] = segments_of("ZZZ|a||c")
    assert [f.label for f in seg.fields] == ["ZZZ-1", "ZZZ-3"]


def test_every_segment_we_emit_has_field_names() -> None:
    names = field_names()
    for segment in ("MSH", "PID", "PV1", "ORC", "OBR", "TQ1", "NTE", "OBX", "ZCG", "SCH", "RGS", "AIS",
                    "BPO", "BPX", "BTX", "MSA", "ERR"):
        assert names[segment] and all(isinstance(n, str) and n for n in names[segment]), segment
    assert names["ORC"][0] == "Order Control"


def test_the_sparkline_is_escaped_svg_scaled_to_the_peak() -> None:
    svg = sparkline_svg([0, 2, 4], "<site>/mllp")
    assert svg.startswith("<svg") and "&lt;site&gt;/mllp: 6 delivered" in svg and "<site>" not in svg
    assert svg.count("<rect") == 3 and 'height="22.0"' in svg and 'height="0.0"' in svg
    assert sparkline_svg([0, 0], "x").count('height="0.0"') == 2


def test_a_session_cookie_round_trips_and_holds_no_token() -> None:
    keys = SessionKeys(b"k" * 32, ttl_s=3600)
    cookie = keys.issue(SITE_A, "ab" * 32, "configured", NOW)
    session = keys.read(cookie, NOW + timedelta(minutes=59))
    assert session is not None and session.principal == SITE_A and session.token_kind == "configured"
    assert keys.read(cookie, NOW + timedelta(hours=1)) is None  # expired
    assert SessionKeys(b"j" * 32, ttl_s=3600).read(cookie, NOW) is None  # another key
    body, mac = cookie.split(".")
    assert keys.read(body + "x." + mac, NOW) is None and keys.read(None, NOW) is None


def test_csrf_tokens_belong_to_one_session() -> None:
    keys = SessionKeys(b"k" * 32, ttl_s=3600)
    one = keys.read(keys.issue(SITE_A, "ab" * 32, "client", NOW), NOW)
    two = keys.read(keys.issue(SITE_A, "ab" * 32, "client", NOW), NOW)
    assert one is not None and two is not None
    assert keys.csrf_token(one) != keys.csrf_token(two)
    assert SessionKeys.same(keys.csrf_token(one), keys.csrf_token(one))
    assert not SessionKeys.same(None, keys.csrf_token(one))
    assert not SessionKeys.same("é", keys.csrf_token(one))


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError):
        SessionKeys(b"short", ttl_s=60)


def test_a_shorter_lifetime_caps_the_session_and_an_oversized_one_is_refused() -> None:
    keys = SessionKeys(b"k" * 32, ttl_s=3600)
    cookie = keys.issue(SITE_A, "ab" * 32, "other", NOW, ttl_s=300)
    assert cookie is not None
    assert keys.read(cookie, NOW + timedelta(seconds=299)) is not None
    assert keys.read(cookie, NOW + timedelta(seconds=300)) is None
    longer = keys.issue(SITE_A, "ab" * 32, "other", NOW, ttl_s=99_999)  # never beyond the console's own
    assert longer is not None and keys.read(longer, NOW + timedelta(seconds=3600)) is None
    huge = Principal("site", "site-a", "x" * 4000)
    assert keys.issue(huge, "ab" * 32, "configured", NOW) is None
