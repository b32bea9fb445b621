"""Read an inbound site HL7v2 message into an :class:`InboundMessage`, or refuse it.

Checks, in order (the first failure is the answer): the size limit (before anything is read), an
MSH with four distinct encoding characters, the segment limit, MSH-10, MSH-5/MSH-6 naming us as the
profile's ``sending_application``/``sending_facility``, MSH-11 the profile's processing id, MSH-12
the profile's version, MSH-9 an accepted type, then the fields each type needs.  What each type
reads is in ``docs/inbound-hl7v2.md``.  Never raises: anything unexpected becomes an ``AR`` refusal.
"""

from __future__ import annotations

from dataclasses import replace

from mappings.er7.ack import AckParseError, MessageHeader, read_header, unescape_text
from mappings.er7.charsets import python_codec
from mappings.inbound.model import ErrorLocation, InboundMessage, InboundRefusal
from mappings.inbound.reader import SEGMENT_SEPARATORS, Er7Reader, TooManySegments
from mappings.inbound.types import Refused, read_order, read_oru, read_ras, read_siu
from mappings.profile.schema import SiteProfile

__all__ = ["parse_inbound", "ACCEPTED_TYPES", "MAX_CONTROL_ID"]

#: MSH-10 is ST(199) in 2.5.1 (20 before); longer ones are refused rather than stored as a duplicate key.
MAX_CONTROL_ID = 199

#: Accepted MSH-9.1^MSH-9.2 per HL7 version.
ACCEPTED_TYPES: dict[str, frozenset[str]] = {
    "2.3": frozenset({"ORM^O01", "SIU^S12", "SIU^S13", "SIU^S14", "SIU^S15", "ORU^R01"}),
    "2.4": frozenset({"ORM^O01", "OML^O21", "SIU^S12", "SIU^S13", "SIU^S14", "SIU^S15", "RAS^O17"}),
    "2.5.1": frozenset({"ORM^O01", "OML^O21", "SIU^S12", "SIU^S13", "SIU^S14", "SIU^S15", "RAS^O17"}),
}


def parse_inbound(
    raw: bytes | str, profile: SiteProfile, *, max_bytes: int | None = None
) -> InboundMessage | InboundRefusal:
    """The typed request in ``raw``, or why it is refused (``AR``/``AE`` with a table 0357 code).

    ``max_bytes`` (default: the profile's ``hl7v2.inbound.max_message_bytes``) is checked first.
    """
    limit = max_bytes if max_bytes is not None else profile.hl7v2.inbound.max_message_bytes
    size = len(raw) if isinstance(raw, bytes) else (len(raw) if len(raw) > limit else len(raw.encode()))
    if size > limit:
        return InboundRefusal("AR", "207", f"message larger than {limit} bytes", None, None, "")
    text = ""
    try:
        text = _decode(raw, profile)
        return _parse(text, profile)
    except Refused as refused:
        return InboundRefusal(
            refused.ack_code, refused.error_code, refused.text, refused.location, refused.header, text
        )
    except Exception:  # noqa: BLE001 - the boundary: nothing a site sends may raise past it
        return InboundRefusal("AR", "207", "the message could not be read", None, None, text)


def _decode(raw: bytes | str, profile: SiteProfile) -> str:
    if isinstance(raw, str):
        text = raw
    else:
        codec = python_codec(profile.hl7v2.charset)
        text = raw.decode("utf-8" if codec == "ascii" else codec, errors="replace")
    return text.lstrip(" \t\r\n\x0b").rstrip("\r\n\x1c")


def _msh(n: int) -> ErrorLocation:
    return ErrorLocation("MSH", 1, n)


def _first_component(hd: str) -> str:
    """The namespace id of a profile HD value (profile values use the standard ``^``)."""
    return hd.split("^", 1)[0]


def _parse(text: str, profile: SiteProfile) -> InboundMessage | InboundRefusal:
    if not text.startswith("MSH"):
        raise Refused("AR", "100", "the message does not start with an MSH segment", None)
    try:
        header = read_header(text)
    except AckParseError as error:
        raise Refused("AR", "102", str(error), _msh(2)) from None
    settings = profile.hl7v2
    try:
        reader = Er7Reader(text, header.delimiters, max_segments=settings.inbound.max_segments)
    except TooManySegments as error:
        raise Refused("AR", "207", str(error), None, header) from None
    if not header.control_id:
        raise Refused("AR", "101", "MSH-10 (message control id) is empty", _msh(10), header)
    if len(header.control_id) > MAX_CONTROL_ID:
        raise Refused(
            "AR",
            "102",
            f"MSH-10 is longer than {MAX_CONTROL_ID} characters",
            _msh(10),
            replace(header, control_id=header.control_id[:MAX_CONTROL_ID]),
        )
    msh = reader.segments[0]
    receiving_app = reader.component(msh, 5)
    if receiving_app != _first_component(settings.sending_application):
        raise Refused("AR", "207", f"MSH-5 '{receiving_app}' is not this gateway", _msh(5), header)
    expected_facility = _first_component(settings.sending_facility)
    if expected_facility and reader.component(msh, 6) != expected_facility:
        raise Refused("AR", "207", f"MSH-6 '{reader.component(msh, 6)}' is not this gateway", _msh(6), header)
    processing_id = reader.component(msh, 11)
    if processing_id != settings.processing_id:
        raise Refused(
            "AR", "202", f"MSH-11 '{processing_id}' is not '{settings.processing_id}'", _msh(11), header
        )
    if header.version != settings.version:
        raise Refused(
            "AR", "203", f"version '{header.version}' is not the site's {settings.version}", _msh(12), header
        )
    message_type = f"{header.message_code}^{header.trigger_event}"
    accepted = ACCEPTED_TYPES[settings.version]
    if message_type not in accepted:
        codes = {t.split("^")[0] for t in accepted}
        code = "201" if header.message_code in codes else "200"
        raise Refused(
            "AR", code, f"{message_type} is not accepted in HL7 {settings.version}", _msh(9), header
        )
    base = _base_message(header, message_type, text)
    if header.message_code in ("ORM", "OML"):
        return read_order(reader, profile, base)
    if header.message_code == "SIU":
        return read_siu(reader, profile, base)
    if header.message_code == "RAS":
        return read_ras(reader, profile, base)
    return read_oru(reader, profile, base)


def _base_message(header: MessageHeader, message_type: str, text: str) -> InboundMessage:
    """The MSH part every :class:`InboundMessage` shares; the type readers fill in the rest."""
    return InboundMessage(
        kind="cancel",
        message_type=message_type,
        version=header.version,
        control_id=header.control_id,
        sending_application=_unescape_hd(header.sending_application, header),
        sending_facility=_unescape_hd(header.sending_facility, header),
        order_ref="",
        placer_order_number=None,
        filler_order_number=None,
        coi=None,
        coi_missing=False,
        header=header,
        raw="\r".join(SEGMENT_SEPARATORS.split(text)),
    )


def _unescape_hd(value: str, header: MessageHeader) -> str:
    d = header.delimiters
    return "^".join(unescape_text(p, d) for p in value.split(d.component))
