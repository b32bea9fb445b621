"""The typed results of reading an inbound HL7v2 message: a request, or a refusal with its ACK code.

``InboundMessage`` is what the service turns into a site request; ``InboundRefusal`` is answered at
once (``AR`` for a message that does not parse, is not for this site, or has an unsupported type or
version; ``AE`` for an application error the parser can already see, such as a missing required
field), with an HL7 table 0357 code and the field it concerns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from mappings.er7.ack import MessageHeader
from mappings.site_request import SiteRequestKind

__all__ = [
    "InboundKind",
    "Appointment",
    "AppointmentAction",
    "OrderNumber",
    "ErrorLocation",
    "InboundMessage",
    "InboundRefusal",
]

InboundKind = SiteRequestKind
Appointment = Literal["apheresis", "infusion"]
#: SIU trigger -> what happened to the appointment (S15 cancels the appointment, not the order).
AppointmentAction = Literal["booked", "rescheduled", "modified", "cancelled"]


@dataclass(frozen=True)
class OrderNumber:
    """An EI: entity identifier (what we compare with the order id) and its namespace, unescaped."""

    entity_id: str
    namespace: str = ""


@dataclass(frozen=True)
class ErrorLocation:
    """Where an error is: segment id, its sequence among segments of that id (1-based), field."""

    segment: str
    sequence: int
    field: int

    def as_tuple(self) -> tuple[str, int, int]:
        return (self.segment, self.sequence, self.field)

    def __str__(self) -> str:
        return f"{self.segment}-{self.field}"


@dataclass(frozen=True)
class InboundMessage:
    """One accepted inbound message, read into the values a site request needs.

    ``order_ref`` is the entity identifier the order is looked up by: ORC-2.1 (else ORC-3.1), or
    SCH-26.1 (else SCH-27.1); for 2.3 SIU, which has no SCH-26/27, SCH-1.1/SCH-2.1 without our
    ``-APH``/``-INF`` suffix.  For ``order_number`` (ORC-1 ``NA``) it is ORC-2.1 and the site's own
    number is ``site_order_number`` (ORC-3.1).  ``coi`` is read where the profile's ``coi_location``
    puts it; ``coi_missing`` is true when that location exists in this message type but is empty
    (the service refuses such a message and writes the safety log).  Times are aware: an HL7 TS
    without an offset is read in the site's timezone.
    """

    kind: InboundKind
    message_type: str  # MSH-9.1^MSH-9.2, e.g. "OML^O21"
    version: str  # MSH-12.1
    control_id: str  # MSH-10
    sending_application: str  # MSH-3, unescaped (components kept with "^")
    sending_facility: str  # MSH-4
    order_ref: str
    placer_order_number: OrderNumber | None  # ORC-2 / SCH-26
    filler_order_number: OrderNumber | None  # ORC-3 / SCH-27
    coi: str | None
    coi_missing: bool
    header: MessageHeader
    raw: str  # the message as decoded, segments separated by CR
    order_control: str | None = None  # ORC-1
    site_order_number: str | None = None  # NA: ORC-3.1
    appointment: Appointment | None = None  # SIU: by SCH-7/AIS-3; XO: by the profile (None: by stage)
    appointment_action: AppointmentAction | None = None  # SIU only
    placer_appointment_id: str | None = None  # SCH-1.1
    filler_appointment_id: str | None = None  # SCH-2.1
    requested_start: datetime | None = None  # XO: TQ1-7 / ORC-7.4; SIU: AIS-4 / SCH-11.4 / TQ1-7
    requested_end: datetime | None = None  # SIU: SCH-11.5 / TQ1-8
    administered_at: datetime | None = None  # infused: RXA-3 / OBX-14 / OBR-7
    reason: str | None = None  # NTE-3 (joined), else ORC-16.2/.1 (SIU: SCH-6.2/.1)

    @property
    def enhanced_mode(self) -> bool:
        return self.header.enhanced_mode


@dataclass(frozen=True)
class InboundRefusal:
    """A message answered at once without a site request.

    ``header`` is None when not even the MSH could be read (then the ACK is built from the profile
    and MSA-2 is empty).  ``commit_code`` is the enhanced-mode commit ACK: ``CR`` for a rejected
    message, ``CE`` for an application error.
    """

    ack_code: Literal["AR", "AE"]
    error_code: str  # HL7 table 0357
    text: str
    location: ErrorLocation | None
    header: MessageHeader | None
    raw: str

    @property
    def commit_code(self) -> Literal["CR", "CE"]:
        return "CR" if self.ack_code == "AR" else "CE"

    @property
    def control_id(self) -> str | None:
        return self.header.control_id if self.header is not None and self.header.control_id else None
