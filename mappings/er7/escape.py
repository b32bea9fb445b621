"""HL7v2 escaping of user text (HL7 v2.5.1 chapter 2, section 2.7 "Use of escape sequences").

Every piece of text that did not come from our own code (names, notes, reasons, locations, lot
numbers, template values) passes through :func:`escape` before it is placed in a field, with the
standard encoding characters ``|^~\\&``:

=========  ==========  ===============================================
character  sequence    why
=========  ==========  ===============================================
``|``      ``\\F\\``     field separator
``^``      ``\\S\\``     component separator
``&``      ``\\T\\``     subcomponent separator
``~``      ``\\R\\``     repetition separator
``\\``      ``\\E\\``     escape character
CR         ``\\.br\\``   line break (the segment terminator otherwise)
other C0   ``\\Xhh\\``   LF, TAB, and the MLLP framing bytes 0x0B/0x1C
=========  ==========  ===============================================

One pass over the text (:meth:`str.translate`), so nothing is escaped twice.  Non-ASCII text is
kept as it is here; :mod:`mappings.hl7v2.charset` then fits each message to the site's MSH-18
character set (ASCII when MSH-18 is empty) and the sender encodes it in that set.
:func:`unescape` is the inverse, for inbound text.
"""

from __future__ import annotations

import re

__all__ = ["escape", "unescape", "ENCODING_CHARACTERS"]

ENCODING_CHARACTERS = "^~\\&"  # MSH-2: component, repetition, escape, subcomponent

_TABLE: dict[int, str] = {
    ord("|"): "\\F\\",
    ord("^"): "\\S\\",
    ord("&"): "\\T\\",
    ord("~"): "\\R\\",
    ord("\\"): "\\E\\",
    ord("\r"): "\\.br\\",
}
for _code in [*range(0x00, 0x20), 0x7F]:
    _TABLE.setdefault(_code, f"\\X{_code:02X}\\")

_NEEDS_ESCAPE = re.compile(r"[|^&~\\\x00-\x1f\x7f]")

_SIMPLE = {"F": "|", "S": "^", "T": "&", "R": "~", "E": "\\", ".br": "\r"}
_SEQUENCE = re.compile(r"\\([^\\\r]*)\\")
_HEX = re.compile(r"^X((?:[0-9A-Fa-f]{2})+)$")


def escape(text: str) -> str:
    """``text`` with every HL7v2 delimiter and control character replaced by its escape sequence."""
    if _NEEDS_ESCAPE.search(text) is None:
        return text
    return text.translate(_TABLE)


def _replace(match: re.Match[str]) -> str:
    body = match.group(1)
    simple = _SIMPLE.get(body)
    if simple is not None:
        return simple
    hexed = _HEX.match(body)
    if hexed is not None:
        raw = bytes.fromhex(hexed.group(1))
        return raw.decode("utf-8", errors="replace") if any(b > 0x7F for b in raw) else raw.decode("ascii")
    return match.group(0)  # unknown or formatting sequence: kept verbatim


def unescape(text: str) -> str:
    """Inverse of :func:`escape`; unknown sequences (``\\H\\``, ``\\.sp\\``...) are kept verbatim."""
    if "\\" not in text:
        return text
    return _SEQUENCE.sub(_replace, text)
