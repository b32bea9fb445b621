"""What each accepted message type contributes: order controls (ORM^O01 / OML^O21), appointments
(SIU^S12-S15), infusion done (RAS^O17; ORU^R01 in 2.3).  Each reader fills in the base message or
raises :class:`Refused` (``AE`` with the table 0357 code and the field)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Literal

from mappings.er7.ack import MessageHeader
from mappings.inbound.model import (
    Appointment,
    AppointmentAction,
    ErrorLocation,
    InboundKind,
    InboundMessage,
    OrderNumber,
)
from mappings.inbound.reader import Er7Reader, Segment, parse_ts
from mappings.profile.schema import SiteProfile

__all__ = ["Refused", "read_order", "read_siu", "read_ras", "read_oru", "ORDER_CONTROLS", "COI_OBX_CODE"]

#: ORC-1 (table 0119) a site may send -> the request kind.
ORDER_CONTROLS: dict[str, InboundKind] = {
    "CA": "cancel",
    "HD": "hold",
    "RL": "release_hold",
    "XO": "change",
    "NA": "order_number",
}
_ACTIONS: dict[str, AppointmentAction] = {
    "S12": "booked",
    "S13": "rescheduled",
    "S14": "modified",
    "S15": "cancelled",
}
_SUFFIXES: dict[str, Appointment] = {"-APH": "apheresis", "-INF": "infusion"}
#: OBX-3.1 of the CoI observation (as the gateway sends it: ``coi^Chain of Identity identifier^99CGT``).
COI_OBX_CODE = "coi"


class Refused(Exception):  # noqa: N818 - a result carried up to the boundary, not a failure
    """Raised by the readers; :func:`mappings.inbound.parse.parse_inbound` turns it into a refusal."""

    def __init__(
        self,
        ack_code: Literal["AR", "AE"],
        error_code: str,
        text: str,
        location: ErrorLocation | None,
        header: MessageHeader | None = None,
    ) -> None:
        super().__init__(text)
        self.ack_code: Literal["AR", "AE"] = ack_code
        self.error_code = error_code
        self.text = text
        self.location = location
        self.header = header


def _ae(base: InboundMessage, code: str, text: str, segment: str, field: int, sequence: int = 1) -> Refused:
    return Refused("AE", code, text, ErrorLocation(segment, sequence, field), base.header)


def _required(reader: Er7Reader, base: InboundMessage, name: str) -> Segment:
    segment = reader.first(name)
    if segment is None:
        raise _ae(base, "100", f"no {name} segment", name, 0)
    return segment


def _ts(
    reader: Er7Reader,
    profile: SiteProfile,
    base: InboundMessage,
    segment: Segment | None,
    field: int,
    component: int = 1,
) -> datetime | None:
    value = reader.component(segment, field, component)
    if not value or segment is None:
        return None
    moment = parse_ts(value, profile.zone)
    if moment is None:
        raise _ae(
            base,
            "102",
            f"{segment.name}-{field} '{value[:40]}' is not an HL7 date/time",
            segment.name,
            field,
            segment.sequence,
        )
    return moment


def _ei(reader: Er7Reader, segment: Segment | None, field: int) -> OrderNumber | None:
    entity = reader.component(segment, field, 1)
    return OrderNumber(entity, reader.component(segment, field, 2)) if entity else None


def _reason(reader: Er7Reader, coded: Segment | None, field: int) -> str | None:
    notes = [t for t in (reader.text(nte, 3) for nte in reader.all("NTE")) if t]
    if notes:
        return "\n".join(notes)
    return reader.component(coded, field, 2) or reader.component(coded, field, 1) or None


def _coi(
    reader: Er7Reader, profile: SiteProfile, orc: Segment | None, has_orc: bool
) -> tuple[str | None, bool]:
    """(CoI, missing): read where the profile's ``coi_location`` puts it; never missing when this
    message type has no such place (an SIU for an ``ORC-4`` site)."""
    location = profile.hl7v2.coi_location
    if location == "ORC-4":
        if not has_orc:
            return None, False
        value = reader.component(orc, 4)
    elif location == "OBX":
        obx = next((s for s in reader.all("OBX") if reader.component(s, 3) == COI_OBX_CODE), None)
        value = reader.text(obx, 5)
    else:
        value = reader.component(reader.first("ZCG"), 2)
    return (value or None), not value


def _order_numbers(reader: Er7Reader, base: InboundMessage, segment: Segment) -> InboundMessage:
    """Placer (field 2) and filler (field 3) order numbers of an ORC or OBR; the order is found by the
    placer's entity identifier, else the filler's."""
    placer, filler = _ei(reader, segment, 2), _ei(reader, segment, 3)
    ref = placer or filler
    if ref is None:
        name = segment.name
        text = f"{name}-2 and {name}-3 (order numbers) are both empty"
        raise _ae(base, "101", text, name, 2, segment.sequence)
    return replace(base, order_ref=ref.entity_id, placer_order_number=placer, filler_order_number=filler)


def read_order(reader: Er7Reader, profile: SiteProfile, base: InboundMessage) -> InboundMessage:
    """ORM^O01 / OML^O21 with ORC-1 CA, HD, RL, XO or NA."""
    orc = _required(reader, base, "ORC")
    control = reader.component(orc, 1).upper()
    if not control:
        raise _ae(base, "101", "ORC-1 (order control) is empty", "ORC", 1)
    kind = ORDER_CONTROLS.get(control)
    if kind is None:
        raise _ae(base, "103", f"order control '{control[:10]}' is not accepted from a site", "ORC", 1)
    message = _order_numbers(reader, base, orc)
    coi, missing = _coi(reader, profile, orc, has_orc=True)
    message = replace(
        message,
        kind=kind,
        order_control=control,
        coi=coi,
        coi_missing=missing,
        reason=_reason(reader, orc, 16),
    )
    if kind == "order_number":
        if message.placer_order_number is None:
            raise _ae(base, "101", "ORC-2 (our order number) is empty", "ORC", 2)
        if message.filler_order_number is None:
            raise _ae(base, "101", "ORC-3 (the site's order number) is empty", "ORC", 3)
        return replace(message, site_order_number=message.filler_order_number.entity_id)
    if kind == "change":
        tq1 = reader.first("TQ1")
        start = _ts(reader, profile, base, tq1, 7) or _ts(reader, profile, base, orc, 7, 4)
        if start is None:
            where = ("TQ1", 7) if profile.hl7v2.version == "2.5.1" else ("ORC", 7)
            raise _ae(base, "101", f"{where[0]}-{where[1]} (the requested date) is empty", *where)
        choice = profile.hl7v2.inbound.change_appointment
        return replace(
            message,
            requested_start=start,
            requested_end=_ts(reader, profile, base, tq1, 8),
            appointment=None if choice == "by_stage" else choice,
        )
    return message


def _appointment(reader: Er7Reader, profile: SiteProfile, sch: Segment, ids: list[str]) -> Appointment | None:
    codes = profile.hl7v2.inbound.appointment_codes
    found = [reader.component(sch, 7)] + [reader.component(ais, 3) for ais in reader.all("AIS")]
    for code in found:
        if code in codes.apheresis:
            return "apheresis"
        if code in codes.infusion:
            return "infusion"
    for value in ids:
        for suffix, appointment in _SUFFIXES.items():
            if value.endswith(suffix):
                return appointment
    return None


def _strip_suffix(value: str) -> str:
    for suffix in _SUFFIXES:
        if value.endswith(suffix):
            return value[: -len(suffix)]
    return value


def read_siu(reader: Er7Reader, profile: SiteProfile, base: InboundMessage) -> InboundMessage:
    """SIU^S12-S15: the apheresis or infusion appointment booked, moved, changed or cancelled."""
    sch = _required(reader, base, "SCH")
    placer_id, filler_id = reader.component(sch, 1), reader.component(sch, 2)
    placer, filler = _ei(reader, sch, 26), _ei(reader, sch, 27)
    number = placer or filler
    ref = number.entity_id if number is not None else _strip_suffix(placer_id or filler_id)
    if not ref:
        field = 1 if base.version == "2.3" else 26
        raise _ae(base, "101", f"SCH-{field} (the order or appointment id) is empty", "SCH", field)
    appointment = _appointment(reader, profile, sch, [placer_id, filler_id])
    if appointment is None:
        raise _ae(
            base,
            "103",
            f"SCH-7/AIS-3 '{reader.component(sch, 7)[:20]}' names no apheresis or "
            "infusion appointment of this profile",
            "SCH",
            7,
        )
    action = _ACTIONS[base.header.trigger_event]
    tq1, ais = reader.first("TQ1"), reader.first("AIS")
    start = (
        _ts(reader, profile, base, ais, 4)
        or _ts(reader, profile, base, tq1, 7)
        or _ts(reader, profile, base, sch, 11, 4)
    )
    if start is None and action != "cancelled":
        raise _ae(base, "101", "AIS-4 / SCH-11.4 (the appointment start) is empty", "AIS", 4)
    end = _ts(reader, profile, base, tq1, 8) or _ts(reader, profile, base, sch, 11, 5)
    coi, missing = _coi(reader, profile, None, has_orc=False)
    return replace(
        base,
        kind="reschedule",
        order_ref=ref,
        placer_order_number=placer,
        filler_order_number=filler,
        coi=coi,
        coi_missing=missing,
        appointment=appointment,
        appointment_action=action,
        placer_appointment_id=placer_id or None,
        filler_appointment_id=filler_id or None,
        requested_start=start,
        requested_end=end,
        reason=_reason(reader, sch, 6) if reader.all("NTE") else None,
    )


def read_ras(reader: Er7Reader, profile: SiteProfile, base: InboundMessage) -> InboundMessage:
    """RAS^O17 (2.4, 2.5.1): RXA-3 is when the product was administered."""
    orc = _required(reader, base, "ORC")
    rxa = _required(reader, base, "RXA")
    message = _order_numbers(reader, base, orc)
    administered = _ts(reader, profile, base, rxa, 3)
    if administered is None:
        raise _ae(base, "101", "RXA-3 (administration start) is empty", "RXA", 3)
    coi, missing = _coi(reader, profile, orc, has_orc=True)
    return replace(
        message,
        kind="infused",
        order_control=reader.component(orc, 1).upper() or None,
        coi=coi,
        coi_missing=missing,
        administered_at=administered,
        reason=_reason(reader, None, 0),
    )


def read_oru(reader: Er7Reader, profile: SiteProfile, base: InboundMessage) -> InboundMessage:
    """ORU^R01 (2.3): the OBX whose OBX-3.1 is the profile's ``infused_obx_code`` means infusion done."""
    obr = _required(reader, base, "OBR")
    orc = reader.first("ORC")
    code = profile.hl7v2.inbound.infused_obx_code
    obx = next((s for s in reader.all("OBX") if reader.component(s, 3) == code), None)
    if obx is None:
        raise _ae(base, "103", f"no OBX with OBX-3 '{code}' (infusion done)", "OBX", 3)
    has_numbers = orc is not None and bool(reader.component(orc, 2) or reader.component(orc, 3))
    message = _order_numbers(reader, base, orc if orc is not None and has_numbers else obr)
    administered = _ts(reader, profile, base, obx, 14) or _ts(reader, profile, base, obr, 7)
    if administered is None:
        raise _ae(base, "101", "OBX-14 / OBR-7 (when infused) is empty", "OBX", 14, obx.sequence)
    coi, missing = _coi(reader, profile, orc, has_orc=True)
    return replace(
        message,
        kind="infused",
        coi=coi,
        coi_missing=missing,
        administered_at=administered,
        reason=_reason(reader, None, 0),
    )
