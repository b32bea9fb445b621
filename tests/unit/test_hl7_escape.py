"""HL7v2 escaping: every delimiter and control character, one pass, agreement with python-hl7."""

from __future__ import annotations

import hl7
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mappings.er7.escape import escape, unescape

_CONTAINER = hl7.parse("MSH|^~\\&|A\r")  # python-hl7's unescape needs the message's separators


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("plain text", "plain text"),
        ("a|b", "a\\F\\b"),
        ("a^b", "a\\S\\b"),
        ("a&b", "a\\T\\b"),
        ("a~b", "a\\R\\b"),
        ("C:\\temp", "C:\\E\\temp"),
        ("line1\rline2", "line1\\.br\\line2"),
        ("line1\nline2", "line1\\X0A\\line2"),
        ("tab\there", "tab\\X09\\here"),
        ("\x0bframe\x1c", "\\X0B\\frame\\X1C\\"),
        ("\\F\\", "\\E\\F\\E\\"),  # an escape sequence typed by a user stays text
        ("Müller <Zoë> & Ørsted", "Müller <Zoë> \\T\\ Ørsted"),
    ],
)
def test_escape_known_values(text: str, escaped: str) -> None:
    assert escape(text) == escaped
    assert unescape(escaped) == text


def test_escaped_text_has_no_delimiters_or_control_characters() -> None:
    out = escape("|^~&\\\r\n\x00\x7f")
    assert not any(c in out for c in "|^~&\r\n\x00\x7f")
    assert out.count("\\") % 2 == 0


def test_unescape_keeps_unknown_sequences_and_decodes_hex() -> None:
    assert unescape("bold \\H\\text\\N\\") == "bold \\H\\text\\N\\"
    assert unescape("\\XC3A9\\") == "é"
    assert unescape("no escapes") == "no escapes"


@given(st.text())
def test_escape_roundtrips(text: str) -> None:
    assert unescape(escape(text)) == text


@given(st.text())
def test_python_hl7_unescapes_what_we_escape(text: str) -> None:
    assert _CONTAINER.unescape(escape(text)) == text
