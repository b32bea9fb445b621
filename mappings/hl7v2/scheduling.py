"""SIU^S12/S13/S15 for the apheresis and infusion appointments of an order.

SCH-1/SCH-2 are the placer/filler appointment ids (``<order id>-APH`` or ``-INF`` in the placer's and
the manufacturer's namespaces; the site's own order number, once known, changes SCH-27 but never an
appointment id), SCH-6 the event reason, SCH-7 and AIS-3 the kind of appointment,
SCH-11 and TQ1 (2.5.1) the timing, SCH-25 the filler status (table 0278: ``Booked`` for S12/S13,
``Cancelled`` for S15); SCH-26/27 (2.4+) link the order numbers.
"""

from __future__ import annotations

from datetime import datetime

from mappings.domain import EventType
from mappings.events import (
    ApheresisRescheduledData,
    ApheresisScheduledData,
    EventRecord,
    InfusionScheduledData,
)
from mappings.hl7v2 import segments as seg
from mappings.hl7v2.event_map import Appointment
from mappings.hl7v2.fields import Segment, format_ts
from mappings.snapshot import OrderSnapshot

__all__ = ["render_siu", "pending_appointments", "APPOINTMENT_SERVICES", "FILLER_STATUS_BY_TRIGGER"]

APPOINTMENT_SERVICES: dict[Appointment, str] = {
    "apheresis": "apheresis^Apheresis collection^99CGT",
    "infusion": "infusion^Cell therapy infusion^99CGT",
}
_SUFFIX: dict[Appointment, str] = {"apheresis": "APH", "infusion": "INF"}
_EVENT_REASONS = {
    "S12": "S12^New appointment booking^99CGT",
    "S13": "S13^Appointment rescheduling^99CGT",
    "S15": "S15^Appointment cancellation^99CGT",
}
#: SCH-25 (table 0278) per trigger event.
FILLER_STATUS_BY_TRIGGER = {"S12": "Booked", "S13": "Booked", "S15": "Cancelled"}


def _appointment_id(order_number: str, appointment: Appointment) -> str:
    value, sep, namespace = order_number.partition("^")
    return f"{value}-{_SUFFIX[appointment]}{sep}{namespace}"


def render_siu(common: seg.Common, appointment: Appointment, trigger: str, *, start: datetime,
               end: datetime | None, reason: str | None) -> list[Segment]:
    """The segments after MSH of one SIU message."""
    start_ts = format_ts(start, common.zone)
    end_ts = format_ts(end, common.zone) if end is not None else ""
    minutes = int((end - start).total_seconds() // 60) if end is not None and end > start else None
    segments = [seg.build_sch(
        common, appointment_id=_appointment_id(common.placer, appointment),
        filler_appointment_id=_appointment_id(common.own_filler or common.filler, appointment),
        event_reason=_EVENT_REASONS[trigger], appointment_reason=APPOINTMENT_SERVICES[appointment],
        start=start_ts, end=end_ts, duration_minutes=minutes, filler_status=FILLER_STATUS_BY_TRIGGER[trigger],
    )]
    if common.settings.version == "2.5.1":
        segments.append(seg.build_tq1(common, start=start_ts, end=end_ts))
    if reason:
        segments.append(seg.build_nte(common, 1, reason, comment_type="1R"))
    segments.append(list(common.pid))
    if common.settings.coi_location == "OBX":
        segments.append(seg.build_coi_obx(common, 1))
    segments.append(seg.build_rgs())
    segments.append(seg.build_ais(APPOINTMENT_SERVICES[appointment], start_ts, minutes))
    return segments


def pending_appointments(order: OrderSnapshot, event: EventRecord
                         ) -> list[tuple[Appointment, datetime, datetime | None]]:
    """Appointments booked before ``event`` and not yet done (collection / infusion), in booking order.

    Late events (a stage behind the order) neither book nor complete an appointment.
    """
    booked: dict[Appointment, tuple[datetime, datetime | None]] = {}
    for record in order.events:
        if record.sequence >= event.sequence or record.late:
            continue
        if record.type in (EventType.apheresis_scheduled, EventType.apheresis_rescheduled):
            data = record.typed_data()
            assert isinstance(data, ApheresisScheduledData | ApheresisRescheduledData)
            booked["apheresis"] = (data.start, data.end)
        elif record.type is EventType.collection_completed:
            booked.pop("apheresis", None)
        elif record.type is EventType.infusion_scheduled:
            infusion = record.typed_data()
            assert isinstance(infusion, InfusionScheduledData)
            booked["infusion"] = (infusion.start, None)
        elif record.type is EventType.product_infused:
            booked.pop("infusion", None)
    return [(kind, start, end) for kind, (start, end) in booked.items()]
