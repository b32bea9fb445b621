"""Segment builders: each returns one :data:`~mappings.hl7v2.fields.Segment` from plain values.

:class:`Common` holds what every message of one event shares (already encoded): the patient's PID,
the placer/filler order numbers, the CoI, the ordering provider and the product code.  Builders
escape any user text they are given themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from mappings.er7.escape import ENCODING_CHARACTERS, escape
from mappings.hl7v2.fields import Segment, segment
from mappings.profile.hl7v2 import Hl7v2Settings
from mappings.profile.pv1 import Pv1Settings

__all__ = [
    "Common",
    "COI_CODE",
    "build_msh",
    "build_orc",
    "build_pv1",
    "build_obr",
    "build_tq1",
    "build_nte",
    "build_coi_obx",
    "build_zcg",
    "build_sch",
    "build_rgs",
    "build_ais",
    "build_bpo",
    "build_bpx",
    "build_btx",
    "priority_tq",
]

#: OBX-3 of the CoI observation (our own code system: no standard code exists).
COI_CODE = "coi^Chain of Identity identifier^99CGT"

#: Priority (``routine``/``urgent``) -> TQ1-9 (table 0485) and TQ-6 (table 0027).
PRIORITY_CODES = {"routine": "R", "urgent": "A"}


@dataclass(frozen=True)
class Common:
    """Encoded values shared by every message rendered for one event."""

    settings: Hl7v2Settings
    zone: ZoneInfo
    pid: Segment
    placer: str  # EI, ORC-2 / OBR-2
    filler: str  # EI, ORC-3 / OBR-3
    coi: str  # EI: CoI value ^ namespace (ISBT128 or the manufacturer)
    coi_raw: str
    coi_format: str
    provider: str  # XCN, ORC-12 / OBR-16
    product: str  # CE/CWE, OBR-4 / BPO-2
    priority: str  # table 0485 / 0027 code
    business_status: str  # CE of the order's business status after the event: ORC-16 of every ORC
    business_status_raw: tuple[str, str, str]  # (code, display, HL7 coding system), unescaped
    transaction_time: str  # event occurred_at, TS in the site's timezone
    order_id: str
    pv1: Segment | None = None  # the profile's PV1 (hl7v2.pv1), after PID in every message
    # EI of our order id in the manufacturer's namespace: ``filler`` until the site tells us its own
    # order number; appointment ids (SCH-2) derive from it, so they never change when ``filler`` does.
    own_filler: str = ""


def build_msh(settings: Hl7v2Settings, timestamp: str, message_type: str, structure: str,
              control_id: str) -> Segment:
    """MSH; MSH-9 has the message structure as a third component from 2.4 on."""
    msh9 = message_type if settings.version == "2.3" else f"{message_type}^{structure}"
    return segment("MSH", {
        1: "|", 2: ENCODING_CHARACTERS, 3: settings.sending_application, 4: settings.sending_facility,
        5: settings.receiving_application, 6: settings.receiving_facility, 7: timestamp, 9: msh9,
        10: control_id, 11: settings.processing_id, 12: settings.version, 15: settings.msh15,
        16: settings.msh16, 18: settings.charset or "",
    })


def priority_tq(common: Common) -> str:
    """TQ with only the priority (component 6): ORC-7 / OBR-27 where TQ1 does not exist."""
    return f"^^^^^{common.priority}"


def build_pv1(settings: Pv1Settings) -> Segment:
    """PV1: set id, PV1-2 patient class (table 0004), PV1-3 assigned location (PL, when given)."""
    fields = {1: "1", 2: settings.patient_class}
    if settings.assigned_location is not None:
        fields[3] = "^".join(escape(c) for c in settings.assigned_location.components()).rstrip("^")
    return segment("PV1", fields)


def build_orc(common: Common, order_control: str, order_status: str, *,
              with_quantity_timing: bool, control_reason: str | None = None) -> Segment:
    """ORC; ORC-4 carries the CoI when the profile says so.

    ORC-16 (order control code reason, CE in 2.3-2.5.1) is one kind of value in every message: the
    order's business status after the event as ``code^text^system`` (our CodeSystem ``99CGT``, or the
    site's ``business_status.overrides`` code), also for HD/OC/OD, whose free-text reason goes to NTE.
    The one exception is the answer to a site's request (CR, UC, HR, ...): there ORC-16 is the
    decision's reason, ``control_reason`` (an encoded CE/CWE, ``^text``).
    """
    fields = {
        1: order_control, 2: common.placer, 3: common.filler, 5: order_status,
        9: common.transaction_time, 12: common.provider,
    }
    if common.settings.coi_location == "ORC-4":
        fields[4] = common.coi
    if with_quantity_timing:
        fields[7] = priority_tq(common)
    fields[16] = common.business_status if control_reason is None else control_reason
    return segment("ORC", fields)


def build_obr(common: Common, *, observed_at: str | None = None, result_status: str | None = None,
              with_quantity_timing: bool) -> Segment:
    fields = {1: "1", 2: common.placer, 3: common.filler, 4: common.product, 16: common.provider}
    if observed_at is not None:
        fields[7] = observed_at
        fields[22] = observed_at
    if result_status is not None:
        fields[25] = result_status
    if with_quantity_timing:
        fields[27] = priority_tq(common)
    return segment("OBR", fields)


def build_tq1(common: Common, *, start: str = "", end: str = "") -> Segment:
    """TQ1 (2.5+): start/end date-time and priority (TQ1-9)."""
    return segment("TQ1", {1: "1", 7: start, 8: end, 9: common.priority})


#: NTE-4 comment type (table 0364, HL7 2.4+): reasons and remarks.
COMMENT_TYPES = {"1R": "1R^Primary Reason^HL70364", "RE": "RE^Remark^HL70364"}


def build_nte(common: Common, set_id: int, text: str, source: str = "L", comment_type: str = "RE") -> Segment:
    """NTE with escaped free text; NTE-2 source of comment (table 0105), NTE-4 comment type (2.4+)."""
    fields = {1: str(set_id), 2: source, 3: escape(text)}
    if common.settings.version != "2.3":
        fields[4] = COMMENT_TYPES[comment_type]
    return segment("NTE", fields)


def build_coi_obx(common: Common, set_id: int) -> Segment:
    return segment("OBX", {1: str(set_id), 2: "ST", 3: COI_CODE, 5: escape(common.coi_raw), 11: "F"})


def build_zcg(common: Common) -> Segment:
    """ZCG (our Z-segment): ZCG-1 set id, ZCG-2 CoI (EI), ZCG-3 CoI format."""
    return segment("ZCG", {1: "1", 2: common.coi, 3: common.coi_format})


def build_sch(common: Common, *, appointment_id: str, filler_appointment_id: str, event_reason: str,
              appointment_reason: str, start: str, end: str, duration_minutes: int | None,
              filler_status: str) -> Segment:
    """SCH for SIU^S12/S13/S15; SCH-25 filler status (table 0278)."""
    duration = f"{duration_minutes}" if duration_minutes is not None else ""
    fields = {
        1: appointment_id, 2: filler_appointment_id, 6: event_reason, 7: appointment_reason,
        9: duration, 10: "min" if duration else "", 11: f"^^{duration}^{start}^{end}".rstrip("^"),
        16: common.provider, 20: common.provider, 25: filler_status,
    }
    if common.settings.version != "2.3":
        fields[26] = common.placer
        fields[27] = common.filler
    return segment("SCH", fields)


def build_rgs() -> Segment:
    return segment("RGS", {1: "1", 2: "A"})


def build_ais(service: str, start: str, duration_minutes: int | None) -> Segment:
    fields = {1: "1", 2: "A", 3: service, 4: start}
    if duration_minutes is not None:
        fields[7] = str(duration_minutes)
        fields[8] = "min"
    return segment("AIS", fields)


def build_bpo(common: Common) -> Segment:
    """BPO: the product ordered (BPO-2) and its quantity (BPO-4)."""
    return segment("BPO", {1: "1", 2: common.product, 4: "1"})


def build_bpx(common: Common, dispense_status: str, status_time: str, din: str | None) -> Segment:
    """BPX: dispense status (BPX-2, table 0510), final (BPX-3), DIN (BPX-5), product (BPX-8)."""
    fields = {1: "1", 2: dispense_status, 3: "F", 4: status_time, 8: common.product, 14: "1"}
    if din:
        fields[5] = escape(din)
    return segment("BPX", fields)


def build_btx(common: Common, transfusion_status: str, status_time: str, din: str | None) -> Segment:
    """BTX: DIN (BTX-2), product (BTX-5), quantity (BTX-8), status (BTX-11, table 0513), final."""
    fields = {1: "1", 5: common.product, 8: "1", 11: transfusion_status, 12: "F", 13: status_time}
    if din:
        fields[2] = escape(din)
    return segment("BTX", fields)
