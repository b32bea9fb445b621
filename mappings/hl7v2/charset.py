"""Character sets of HL7v2 messages (MSH-18, HL7 table 0211) and the fallback for text a set cannot hold.

A site that declares no MSH-18 receives printable 7-bit ASCII (the HL7 default), ``8859/1`` receives
ISO 8859-1, ``UNICODE``/``UNICODE UTF-8`` receive UTF-8.  :func:`python_codec` is the one place that
maps MSH-18 to the codec the MLLP sender encodes with, so rendering and sending always agree.

:func:`fit_segments` makes one message fit its character set, field by field:

* text fields (names, notes, code displays, ...) are transliterated to the nearest characters of the
  set (``charset_fallback: transliterate``: ``Zoë Núñez`` -> ``Zoe Nunez``; Unicode NFKD decomposition
  with the combining marks dropped, plus :data:`NEAREST` for letters that do not decompose, such as
  ``ß`` -> ``ss``; a character with no equivalent becomes ``?``), or the message is refused
  (``charset_fallback: refuse``);
* identifier fields (:data:`IDENTIFIER_FIELDS`: MRN, CoI, order numbers, DIN, MSH-3..6) are never
  transliterated, whatever the fallback: a changed identifier could name another patient or order,
  so a message whose identifier the set cannot hold is refused.

Replacement text is escaped (a fullwidth ``＾`` decomposes to ``^``, which must not become a
delimiter).  Pure: no I/O.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from mappings.er7.charsets import CharsetFallback, charset_label, encodable, python_codec
from mappings.er7.escape import escape
from mappings.hl7v2.fields import Segment
from mappings.result import MappingIssue

__all__ = [
    "NEAREST",
    "IDENTIFIER_FIELDS",
    "Fitted",
    "transliterate",
    "fit_segments",
    "charset_issues",
    "refusal_reason",
]


#: Letters and signs NFKD does not decompose into ASCII, with their customary ASCII spelling.
NEAREST: Final[dict[str, str]] = {
    "ß": "ss", "ẞ": "SS", "Æ": "AE", "æ": "ae", "Œ": "OE", "œ": "oe", "Ø": "O", "ø": "o",
    "Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Ð": "D", "ð": "d", "Þ": "TH", "þ": "th",
    "Ħ": "H", "ħ": "h", "ı": "i", "Ŧ": "T", "ŧ": "t", "Ŋ": "N", "ŋ": "n", "ĸ": "k", "ſ": "s",
    "‘": "'", "’": "'", "‚": "'", "‛": "'", "“": '"', "”": '"', "„": '"', "‟": '"',
    "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "―": "-", "−": "-",
    "•": "*", "·": ".", "…": "...", "«": '"', "»": '"', "‹": "<", "›": ">",
    "€": "EUR", "£": "GBP", "¥": "JPY", "©": "(C)", "®": "(R)", "°": "deg", "±": "+/-",
    "×": "x", "÷": "/", "µ": "u", "¼": "1/4", "½": "1/2", "¾": "3/4", "¹": "1", "²": "2", "³": "3",
    "\u00a0": " ", "¡": "!", "¿": "?", "§": "S", "¶": "P", "¢": "c", "¤": "$", "¦": "|",
    "¬": "-", "¯": "-", "´": "'", "¸": ",", "¨": '"', "ª": "a", "º": "o",
}

#: Fields that hold identifiers (segment id, field number): never transliterated.
IDENTIFIER_FIELDS: Final[frozenset[tuple[str, int]]] = frozenset({
    ("MSH", 3), ("MSH", 4), ("MSH", 5), ("MSH", 6), ("MSH", 10),
    ("PID", 3), ("ORC", 2), ("ORC", 3), ("ORC", 4), ("OBR", 2), ("OBR", 3), ("ZCG", 2),
    ("SCH", 1), ("SCH", 2), ("SCH", 26), ("SCH", 27), ("BPX", 5), ("BTX", 2),
})
_COI_OBSERVATION = "coi^"  # OBX-3 of the CoI observation (mappings.hl7v2.segments.COI_CODE)


@lru_cache(maxsize=4096)
def _fits(char: str, codec: str) -> bool:
    try:
        char.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


@lru_cache(maxsize=4096)
def _nearest(char: str, codec: str) -> tuple[str, bool]:
    """(replacement, exact): the nearest spelling of ``char`` in ``codec``; ``?`` if there is none."""
    if char in NEAREST and encodable(NEAREST[char], codec):
        return NEAREST[char], True
    out: list[str] = []
    exact = True
    for part in unicodedata.normalize("NFKD", char):
        if unicodedata.combining(part):
            continue
        if _fits(part, codec):
            out.append(part)
        elif part in NEAREST and encodable(NEAREST[part], codec):
            out.append(NEAREST[part])
        else:
            out.append("?")
            exact = False
    if not out:
        return "?", False
    return "".join(out), exact


def transliterate(text: str, codec: str) -> tuple[str, bool]:
    """``text`` with every character ``codec`` cannot encode replaced by its nearest spelling.

    Returns (text, complete): ``complete`` is False if some character had no equivalent (``?``).
    Characters the codec can encode are kept as they are (Latin-1 keeps ``ë``).  The replacement is
    plain text: escape it before it goes into a field (:func:`fit_segments` does).
    """
    if encodable(text, codec):
        return text, True
    out: list[str] = []
    complete = True
    for char in text:
        if _fits(char, codec):
            out.append(char)
        else:
            spelled, exact = _nearest(char, codec)
            out.append(spelled)
            complete = complete and exact
    return "".join(out), complete


def _transliterate_field(value: str, codec: str) -> tuple[str, bool]:
    """Like :func:`transliterate` for an encoded field: replacements are escaped."""
    out: list[str] = []
    complete = True
    for char in value:
        if _fits(char, codec):
            out.append(char)
        else:
            spelled, exact = _nearest(char, codec)
            out.append(escape(spelled))
            complete = complete and exact
    return "".join(out), complete


@dataclass(frozen=True)
class Fitted:
    """The outcome of :func:`fit_segments` for one message."""

    transliterated: tuple[str, ...] = ()  # field paths (``PID-5``) that were changed
    incomplete: tuple[str, ...] = ()  # field paths where some character became ``?``
    refused: tuple[str, ...] = ()  # field paths that made the message unsendable
    identifiers: tuple[str, ...] = ()  # the refused paths that hold identifiers

    @property
    def sendable(self) -> bool:
        return not self.refused


def _is_identifier(seg: Sequence[str], number: int) -> bool:
    if (seg[0], number) in IDENTIFIER_FIELDS:
        return True
    return seg[0] == "OBX" and number == 5 and len(seg) > 3 and seg[3].startswith(_COI_OBSERVATION)


def fit_segments(segments: Iterable[Segment], charset: str | None, fallback: CharsetFallback) -> Fitted:
    """Make the segments of one message fit ``charset`` in place (see the module docstring).

    With ``refuse`` (or an identifier that does not fit) the segments are left as they are and the
    offending field paths are returned in :attr:`Fitted.refused`.
    """
    codec = python_codec(charset)
    if codec == "utf-8":
        return Fitted()
    changes: list[tuple[Segment, int, str, str, bool]] = []
    refused: list[str] = []
    identifiers: list[str] = []
    for seg in segments:
        for number in range(1, len(seg)):
            value = seg[number]
            if encodable(value, codec):
                continue
            path = f"{seg[0]}-{number}"
            identifier = _is_identifier(seg, number)
            if identifier:
                identifiers.append(path)
            if identifier or fallback == "refuse":
                refused.append(path)
                continue
            fitted, complete = _transliterate_field(value, codec)
            changes.append((seg, number, path, fitted, complete))
    if refused:
        return Fitted(refused=tuple(dict.fromkeys(refused)), identifiers=tuple(dict.fromkeys(identifiers)))
    for seg, number, _, fitted, _ in changes:
        seg[number] = fitted
    return Fitted(
        transliterated=tuple(dict.fromkeys(path for _, _, path, _, _ in changes)),
        incomplete=tuple(dict.fromkeys(path for _, _, path, _, complete in changes if not complete)),
    )


def charset_issues(outcomes: Sequence[tuple[str, Fitted]], charset: str | None,
                   fallback: CharsetFallback) -> list[MappingIssue]:
    """Mapping issues for the (message type, :class:`Fitted`) of one event: field paths, never values."""
    label = charset_label(charset)
    by_path: dict[tuple[str, str], list[str]] = {}
    for message_type, fitted in outcomes:
        refused = [p for p in fitted.refused if p not in fitted.identifiers]
        for kind, paths in (("transliterated", fitted.transliterated), ("incomplete", fitted.incomplete),
                            ("identifier", fitted.identifiers), ("refused", refused)):
            for path in paths:
                by_path.setdefault((kind, path), []).append(message_type)
    issues = []
    for (kind, path), types in by_path.items():
        where = ", ".join(dict.fromkeys(types))
        if kind == "transliterated":
            issues.append(MappingIssue(
                "warning", "hl7v2-transliterated", f"hl7v2.{path}",
                f"{path} had characters outside {label}; sent with the nearest characters in {where} "
                "(charset_fallback: transliterate)"))
        elif kind == "incomplete":
            issues.append(MappingIssue(
                "error", "hl7v2-unrepresentable", f"hl7v2.{path}",
                f"{path} had characters with no equivalent in {label}; sent as '?' in {where}"))
        elif kind == "identifier":
            issues.append(MappingIssue(
                "error", "hl7v2-charset-refused", f"hl7v2.{path}",
                f"{path} is an identifier with characters outside {label}; identifiers are never "
                f"transliterated, so {where} was not sent"))
        else:
            issues.append(MappingIssue(
                "error", "hl7v2-charset-refused", f"hl7v2.{path}",
                f"{path} has characters outside {label}; {where} was not sent "
                f"(charset_fallback: {fallback})"))
    return issues


def refusal_reason(fitted: Fitted, charset: str | None) -> str | None:
    """Why a message is not sent (field paths only), or None if it may be sent."""
    if fitted.sendable:
        return None
    label = charset_label(charset)
    if fitted.identifiers:
        return (f"identifier {', '.join(fitted.identifiers)} cannot be encoded in {label} "
                "(identifiers are never transliterated)")
    return f"{', '.join(fitted.refused)} cannot be encoded in {label} (charset_fallback: refuse)"
