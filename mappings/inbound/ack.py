"""ACKs for inbound messages, in the site's HL7 version, built by :func:`mappings.er7.ack.build_ack`.

MSH-3/4 and MSH-5/6 are the received ones swapped, MSA-2 is the received MSH-10, MSH-12 is the
profile's version.  An error carries ERR: ERR-2 location, ERR-3 code (table 0357) and ERR-8 text in
2.5.1; ERR-1 ``segment^sequence^field^code&text&HL70357`` in 2.3/2.4.  A refusal whose MSH could not
be read is answered from the profile's own identity with MSA-2 ``UNREADABLE``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from mappings.er7 import ack as er7_ack
from mappings.er7.ack import MessageHeader
from mappings.inbound.model import ErrorLocation, InboundMessage, InboundRefusal
from mappings.inbound.parse import MAX_CONTROL_ID
from mappings.inbound.reader import SEGMENT_SEPARATORS
from mappings.profile.schema import SiteProfile

__all__ = ["build_ack"]


def build_ack(
    message_or_refusal: InboundMessage | InboundRefusal,
    *,
    ack_code: str,
    text: str | None,
    now: datetime,
    profile: SiteProfile,
    control_id: str,
    error_code: str | None = None,
    error_location: ErrorLocation | None = None,
) -> str:
    """The ER7 ACK (segments ending in CR) answering ``message_or_refusal`` with ``ack_code``.

    ``ack_code``: AA/AE/AR, or CA/CE/CR (commit ACK, enhanced mode only).  For a refusal, its own
    ``error_code``/``location`` are used unless given; for a message answered ``AE`` by the service
    (unknown order, CoI problem), pass them.  ``now`` is MSH-7; ``control_id`` the ACK's MSH-10.
    """
    if isinstance(message_or_refusal, InboundRefusal):
        error_code = error_code or message_or_refusal.error_code
        error_location = error_location or message_or_refusal.location
        header = message_or_refusal.header
        source = _msh_line(message_or_refusal.raw, header) if header is not None else _stand_in(profile)
    else:
        source = _msh_line(message_or_refusal.raw, message_or_refusal.header)
    location = error_location.as_tuple() if error_location is not None else None
    return er7_ack.build_ack(
        source,
        ack_code,
        text=text,
        error_code=error_code,
        control_id=control_id,
        now=now.astimezone(UTC),
        error_location=location,
        version=profile.hl7v2.version,
    )


def _msh_line(raw: str, header: MessageHeader) -> str:
    """The received MSH segment alone (all an ACK needs), MSH-10 cut to what the parser accepted."""
    msh = SEGMENT_SEPARATORS.split(raw, maxsplit=1)[0]
    if len(header.control_id) >= MAX_CONTROL_ID:
        fields = msh.split(header.delimiters.field)
        if len(fields) > 9:  # fields[9] is MSH-10 (MSH-1 is the separator itself)
            fields[9] = fields[9][:MAX_CONTROL_ID]
            msh = header.delimiters.field.join(fields)
    return msh + "\r"


def _stand_in(profile: SiteProfile) -> str:
    """An MSH as the site would have sent it, for answering a message whose own MSH is unreadable.

    MSH-10 is a placeholder (MSA-2 is required): the site cannot match the ACK to a message anyway.
    """
    s = profile.hl7v2
    msh9 = "ORM^O01" if s.version == "2.3" else "ORM^O01^ORM_O01"
    return (
        f"MSH|^~\\&|{s.receiving_application}|{s.receiving_facility}|{s.sending_application}|"
        f"{s.sending_facility}|||{msh9}|UNREADABLE|{s.processing_id}|{s.version}\r"
    )
