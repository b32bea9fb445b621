"""HL7v2 acknowledgements: parse an ACK we received, build an ACK/NAK for a message we received.

A small, careful reader of the few fields an ACK needs (MSH, MSA, ERR) rather than a full parser:
an ACK from a site engine must be understood even when it would not pass strict validation, and
the delimiters are whatever the message's own MSH-1/MSH-2 declare.

Original mode (MSH-15/16 empty): MSA-1 is AA/AE/AR.  Enhanced mode (MSH-15/16 from table 0155):
a commit ACK CA/CE/CR, then an application ACK AA/AE/AR.  From 2.5 the ERR segment carries ERR-3
(table 0357 code), ERR-4 (severity) and ERR-8 (user message); up to 2.4 it carries ERR-1
(segment^sequence^field^code&text&HL70357).  Both are read; the one matching the version is written.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime

__all__ = [
    "ACK_CODES",
    "Ack",
    "AckError",
    "AckParseError",
    "Delimiters",
    "MessageHeader",
    "build_ack",
    "parse_ack",
    "read_header",
    "unescape_text",
]

ACK_CODES = frozenset({"AA", "AE", "AR", "CA", "CE", "CR"})
_COMMIT_CODES = frozenset({"CA", "CE", "CR"})
_ERROR_CODES = frozenset({"AE", "AR", "CE", "CR"})

# HL7 table 0357 (message error condition codes) - the ones an ACK we build may carry.
_TABLE_0357 = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}
_DEFAULT_ERROR_CODE = "207"
_MSA3_MAX = 80  # MSA-3 is ST(80); the full text goes in ERR-8 (2.5+) where it is a TX.
_SEGMENT_SPLIT = re.compile(r"\r\n|\r|\n")


class AckParseError(ValueError):
    """The text is not an HL7v2 message with an MSH and an MSA-1 (no use as an acknowledgement)."""


@dataclass(frozen=True)
class Delimiters:
    """MSH-1 and MSH-2 of one message."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def encoding_characters(self) -> str:
        return f"{self.component}{self.repetition}{self.escape}{self.subcomponent}"


@dataclass(frozen=True)
class MessageHeader:
    """The MSH fields an acknowledgement needs, unescaped where they are text."""

    delimiters: Delimiters
    sending_application: str  # MSH-3, raw (may hold components)
    sending_facility: str  # MSH-4, raw
    receiving_application: str  # MSH-5, raw
    receiving_facility: str  # MSH-6, raw
    message_code: str  # MSH-9.1
    trigger_event: str  # MSH-9.2
    control_id: str  # MSH-10
    processing_id: str  # MSH-11, raw
    version: str  # MSH-12.1
    accept_ack_type: str  # MSH-15 ('' in original mode)
    application_ack_type: str  # MSH-16
    character_set: str  # MSH-18, raw

    @property
    def enhanced_mode(self) -> bool:
        return bool(self.accept_ack_type or self.application_ack_type)


@dataclass(frozen=True)
class AckError:
    """One ERR segment: ERR-3.1 (or ERR-1.4.1 up to 2.4), ERR-4 severity, ERR-8 user message."""

    code: str | None
    code_text: str | None
    severity: str | None
    message: str | None


@dataclass(frozen=True)
class Ack:
    """A parsed acknowledgement. ``code`` is MSA-1, upper-cased; ``control_id`` is MSA-2."""

    code: str
    control_id: str
    text: str | None
    errors: tuple[AckError, ...]
    header: MessageHeader

    @property
    def is_commit_ack(self) -> bool:
        return self.code in _COMMIT_CODES

    @property
    def detail(self) -> str | None:
        """The human text worth keeping with a dead letter: MSA-3 and every ERR message."""
        parts: list[str] = []
        if self.text:
            parts.append(self.text)
        for error in self.errors:
            piece = error.message or error.code_text
            label = f"[{error.code}] " if error.code else ""
            if piece and piece not in parts:
                parts.append(f"{label}{piece}")
            elif not piece and error.code:
                parts.append(f"[{error.code}]")
        return "; ".join(parts) or None


def _segments(er7: str) -> list[str]:
    body = er7.lstrip(" \t\r\n\x0b").rstrip("\r\n\x1c")
    return [s for s in _SEGMENT_SPLIT.split(body) if s]


def _read_delimiters(msh: str) -> Delimiters:
    if not msh.startswith("MSH") or len(msh) < 8:
        raise AckParseError("the message does not start with an MSH segment")
    field = msh[3]
    encoding = msh[4:].split(field, 1)[0]
    if len(encoding) < 4 or field in encoding or len(set(encoding[:4])) < 4 or field.isalnum():
        raise AckParseError("MSH-1/MSH-2 do not declare four distinct delimiters")
    return Delimiters(field, encoding[0], encoding[1], encoding[2], encoding[3])


def _msh_fields(msh: str, d: Delimiters) -> list[str]:
    """MSH fields numbered as in the standard: index 1 is MSH-1, index 2 is MSH-2."""
    rest = msh[4:].split(d.field)
    return ["MSH", d.field, *rest]


def _field(fields: list[str], n: int) -> str:
    return fields[n] if n < len(fields) else ""


def _component(value: str, d: Delimiters, n: int) -> str:
    """Component ``n`` (1-based) of the first repetition."""
    parts = value.split(d.repetition)[0].split(d.component)
    return parts[n - 1] if n <= len(parts) else ""


def _unescape(value: str, d: Delimiters) -> str:
    """Undo HL7 escapes (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\Xhh\\ \\.br\\``); unknown escapes are kept."""
    e = d.escape
    if e not in value:
        return value
    simple = {"F": d.field, "S": d.component, "T": d.subcomponent, "R": d.repetition, "E": e,
              ".br": "\n"}
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        end = value.find(e, i + 1) if ch == e else -1
        if end == -1:
            out.append(ch)
            i += 1
            continue
        token = value[i + 1:end]
        if token in simple:
            out.append(simple[token])
        elif token[:1] == "X" and len(token) > 1 and len(token) % 2 == 1 and _is_hex(token[1:]):
            out.append(bytes.fromhex(token[1:]).decode("utf-8", errors="replace"))
        else:
            out.append(value[i:end + 1])
        i = end + 1
    return "".join(out)


def unescape_text(value: str, delimiters: Delimiters) -> str:
    """Undo HL7 escapes in one field/component value read with the message's own ``delimiters``."""
    return _unescape(value, delimiters)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def _escape(value: str, d: Delimiters) -> str:
    """Escape user text for an ST/TX field: delimiters and control characters (CR, LF, the MLLP
    block characters) never reach the wire raw; they become ``\\F\\``... and ``\\Xhh\\``."""
    e = d.escape
    table = {e: f"{e}E{e}", d.field: f"{e}F{e}", d.component: f"{e}S{e}", d.subcomponent: f"{e}T{e}",
             d.repetition: f"{e}R{e}"}
    return "".join(table.get(c) or (f"{e}X{ord(c):02X}{e}" if c < " " and c != "\t" else c) for c in value)


def read_header(er7: str | bytes, *, encoding: str = "utf-8") -> MessageHeader:
    """Read the MSH of any HL7v2 message (custom delimiters honoured). Raises :class:`AckParseError`."""
    text = er7.decode(encoding, errors="replace") if isinstance(er7, bytes) else er7
    segments = _segments(text)
    if not segments:
        raise AckParseError("empty message")
    d = _read_delimiters(segments[0])
    f = _msh_fields(segments[0], d)
    msh9 = _field(f, 9)
    return MessageHeader(
        delimiters=d,
        sending_application=_field(f, 3),
        sending_facility=_field(f, 4),
        receiving_application=_field(f, 5),
        receiving_facility=_field(f, 6),
        message_code=_component(msh9, d, 1),
        trigger_event=_component(msh9, d, 2),
        control_id=_unescape(_field(f, 10), d),
        processing_id=_field(f, 11),
        version=_component(_field(f, 12), d, 1),
        accept_ack_type=_field(f, 15),
        application_ack_type=_field(f, 16),
        character_set=_field(f, 18),
    )


def parse_ack(er7: str | bytes, *, encoding: str = "utf-8") -> Ack:
    """Parse an ACK (or any message with an MSA). Raises :class:`AckParseError` when there is none.

    Bytes are decoded with ``encoding`` (undecodable bytes are replaced, never fatal: the MSA fields
    that drive delivery are ASCII).
    """
    text = er7.decode(encoding, errors="replace") if isinstance(er7, bytes) else er7
    header = read_header(text)
    d = header.delimiters
    msa: list[str] | None = None
    errors: list[AckError] = []
    for segment in _segments(text)[1:]:
        name = segment[:3]
        fields = segment.split(d.field)
        if name == "MSA" and msa is None:
            msa = fields
        elif name == "ERR":
            errors.extend(_read_err(fields, d))
    if msa is None:
        raise AckParseError("no MSA segment")
    code = _unescape(_field(msa, 1), d).strip().upper()
    if not code:
        raise AckParseError("MSA-1 (acknowledgment code) is empty")
    msa3 = _unescape(_field(msa, 3), d)
    return Ack(code=code, control_id=_unescape(_field(msa, 2), d), text=msa3 or None,
               errors=tuple(errors), header=header)


def _read_err(fields: list[str], d: Delimiters) -> list[AckError]:
    code3 = _field(fields, 3)
    severity = _field(fields, 4) or None
    user_message = _unescape(_field(fields, 8), d) or None
    if code3 or severity or user_message:  # 2.5+ style
        return [AckError(code=_unescape(_component(code3, d, 1), d) or None,
                         code_text=_unescape(_component(code3, d, 2), d) or None,
                         severity=severity, message=user_message)]
    found: list[AckError] = []
    for rep in _field(fields, 1).split(d.repetition):  # 2.3/2.4 style ERR-1, repeating
        parts = rep.split(d.component)
        ce = parts[3] if len(parts) > 3 else ""
        sub = ce.split(d.subcomponent)
        code = _unescape(sub[0], d) or None
        code_text = _unescape(sub[1], d) if len(sub) > 1 and sub[1] else None
        if code or code_text:
            found.append(AckError(code=code, code_text=code_text, severity=None, message=None))
    return found


def _ack_message_type(header: MessageHeader, d: Delimiters) -> str:
    trigger = header.trigger_event
    if _version_tuple(header.version) <= (2, 3):  # MSH-9.3 (message structure) arrived in 2.3.1
        return f"ACK{d.component}{trigger}" if trigger else "ACK"
    return f"ACK{d.component}{trigger}{d.component}ACK"


def _version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return (2, 5, 1)


def build_ack(message_er7: str, code: str, *, text: str | None = None, error_code: str | None = None,
              control_id: str | None = None, now: datetime | None = None,
              error_location: tuple[str, int, int] | None = None, version: str | None = None) -> str:
    """Build the ACK/NAK for a message we received, in its own version and delimiters.

    ``code`` is AA/AE/AR (original mode, or the application ACK in enhanced mode) or CA/CE/CR (the
    commit ACK; only for a message in enhanced mode, i.e. with MSH-15 or MSH-16 valued).  MSH-3/4 and
    MSH-5/6 are swapped, MSH-9 is ``ACK^<trigger>^ACK`` (``ACK^<trigger>`` up to 2.3), MSA-2 is the
    received MSH-10, MSH-11/12/18 are copied.  ``text`` is escaped; it goes to MSA-3 (cut to 80) and,
    for an error, to ERR-8 (2.5+).  An error ACK carries ERR with ``error_code`` (table 0357, default
    207).  ``control_id`` (the ACK's MSH-10, at most 20 characters) and ``now`` (MSH-7, UTC) are
    generated when not given.  ``error_location`` (segment id, segment sequence, field) goes to ERR-2
    (2.5+) or the first components of ERR-1 (up to 2.4).  ``version`` (MSH-12) replaces the received
    message's version (e.g. the site's own when the message declared another).  Segments end with ``\\r``.
    """
    code = code.upper()
    if code not in ACK_CODES:
        raise ValueError(f"acknowledgment code must be one of {sorted(ACK_CODES)}, not {code!r}")
    header = read_header(message_er7)
    if version is not None:
        header = replace(header, version=version)
    if code in _COMMIT_CODES and not header.enhanced_mode:
        raise ValueError("a commit ACK (CA/CE/CR) answers only a message in enhanced mode (MSH-15/16)")
    if not header.control_id:
        raise ValueError("the received message has no MSH-10 to acknowledge")
    ack_id = control_id if control_id is not None else uuid.uuid4().hex[:20]
    if not ack_id or len(ack_id) > 20:
        raise ValueError("an ACK control id must be 1 to 20 characters")
    d = header.delimiters
    timestamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%d%H%M%S")
    msh = [
        "MSH", d.encoding_characters, header.receiving_application, header.receiving_facility,
        header.sending_application, header.sending_facility, timestamp, "",
        _ack_message_type(header, d), _escape(ack_id, d), header.processing_id,
        header.version or "2.5.1", "", "",
        "NE" if header.enhanced_mode else "", "NE" if header.enhanced_mode else "", "",
        header.character_set,
    ]
    msa = ["MSA", code, _escape(header.control_id, d)]
    if text:
        msa.append(_escape(text[:_MSA3_MAX], d))
    segments = [d.field.join(msh).rstrip(d.field), d.field.join(msa)]
    if code in _ERROR_CODES or error_code is not None:
        segments.append(_build_err(header, d, code, text, error_code, error_location))
    return "\r".join(segments) + "\r"


def _location(location: tuple[str, int, int] | None, d: Delimiters) -> str:
    """ERR-2 (ERL) / ERR-1.1-3 (ELD): segment id ^ sequence ^ field (field 0: the whole segment)."""
    if location is None:
        return ""
    segment_id, sequence, field = location
    parts = [_escape(segment_id, d), str(sequence)] + ([str(field)] if field else [])
    return d.component.join(parts)


def _build_err(header: MessageHeader, d: Delimiters, code: str, text: str | None,
               error_code: str | None, location: tuple[str, int, int] | None = None) -> str:
    err_code = error_code or (_DEFAULT_ERROR_CODE if code in _ERROR_CODES else "0")
    err_text = _TABLE_0357.get(err_code, "")
    if _version_tuple(header.version) >= (2, 5):
        cwe = d.component.join([_escape(err_code, d), _escape(err_text, d), "HL70357"])
        severity = "E" if code in _ERROR_CODES else "I"
        erl = _location(location, d)
        fields = ["ERR", "", erl, cwe, severity, "", "", "", _escape(text, d) if text else ""]
        return d.field.join(fields).rstrip(d.field)
    ce = d.subcomponent.join([_escape(err_code, d), _escape(err_text, d), "HL70357"])
    eld = d.component.join([_escape(location[0], d), str(location[1]), str(location[2] or "")]) \
        if location is not None else d.component * 2
    return f"ERR{d.field}{eld}{d.component}{ce}"
