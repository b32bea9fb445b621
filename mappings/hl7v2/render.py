"""Render the HL7v2 messages a site receives for one event (pure, direct ER7 string building).

``render_messages(order, event, profile, terminology, now)`` follows the table in
:mod:`mappings.hl7v2.event_map`: the order message (``OML^O21`` or ``ORM^O01``) for every event,
plus ``ORU^R01`` for measurements and release results, ``SIU^S12/S13/S15`` for appointments and
``BPS^O29``/``BTS^O31`` for product status, each when the profile turns it on.

Identifiers: ORC-2/OBR-2 (placer order number) is the order id in the sending application's
namespace, ORC-3/OBR-3 (filler order number) the order id in the manufacturer's namespace, or, once
the site told us its own order number (``NA``; ``OrderSnapshot.site_order_number``), that number in
the namespace of the site's application (``receiving_application``.1, e.g. ``4711^EPIC``); the CoI
(namespace ``ISBT128`` or the manufacturer) goes to ORC-4, a CoI OBX, or a ``ZCG`` segment
(BPS/BTS have no OBX: there the OBX choice falls back to ZCG).  MSH-10 is a hash of site,
manufacturer, order, event id and message index (20 characters, base32), so re-rendering an event
gives the same control ids.  Timestamps are in the site's timezone with offset.  With
``demographics: mrn_only`` PID carries PID-3 only and PID-5 is ``^^^^^^U`` (name type unspecified),
since PID-5 is required; with ``full`` also the name, birth date (PID-7) and sex (PID-8).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from mappings import domain as d
from mappings.domain import EventType
from mappings.er7.escape import escape
from mappings.events import (
    ApheresisRescheduledData,
    ApheresisScheduledData,
    CollectionCompletedData,
    CustodyTransferredData,
    EventRecord,
    InfusionScheduledData,
    ManufacturingCompletedData,
    ManufacturingStartedData,
    Measurement,
    OrderCancelledData,
    OrderOnHoldData,
    OrderPlacedData,
    ReleaseFailedData,
    ReleasePassedData,
    ShipmentDispatchedData,
)
from mappings.hl7v2 import segments as seg
from mappings.hl7v2.charset import Fitted, charset_issues, fit_segments, refusal_reason
from mappings.hl7v2.event_map import (
    DISPENSE_STATUS_BY_EVENT,
    ORDER_CONTROL_PRODUCT_STATUS,
    ORDER_CONTROL_RESULTS,
    SCHEDULING_BY_EVENT,
    TRANSFUSION_STATUS_BY_EVENT,
    Appointment,
    order_control,
    order_status,
)
from mappings.hl7v2.fields import (
    Segment,
    coded,
    entity_id,
    format_date,
    format_ts,
    person_name,
    segment,
    serialize,
    site_zone,
)
from mappings.hl7v2.overrides import apply_overrides, overridden_identifiers, render_overrides
from mappings.hl7v2.results import RESULT_STATUS_FINAL, render_observations
from mappings.hl7v2.scheduling import pending_appointments, render_siu
from mappings.profile.hl7v2 import Hl7v2Settings
from mappings.profile.schema import SiteProfile
from mappings.profile.templates import TemplateLimits
from mappings.result import Hl7Message, MappingIssue
from mappings.snapshot import OrderSnapshot
from terminology import Terminology
from terminology.hl7_tables import load_hl7_tables

__all__ = ["render_messages", "control_id", "order_common", "filler_order_number", "finish_drafts", "Draft",
           "SEX_CODES"]

#: Patient.sex -> PID-8 (table 0001).
SEX_CODES = {"male": "M", "female": "F", "other": "O", "unknown": "U"}

_OWN_CODING_SYSTEM = "99CGT"
_APHERESIS_DATA = ApheresisScheduledData | ApheresisRescheduledData


@dataclass
class Draft:
    """One message before its last steps (:func:`finish_drafts`): type, structure and body segments."""

    message_type: str  # MSH-9.1^MSH-9.2
    structure: str  # MSH-9.3
    segments: list[Segment]
    refused: str | None = None  # why it is not sent (set by finish_drafts)


_Draft = Draft  # the name the retraction renderer imports


def control_id(site_id: str, manufacturer_id: str, order_id: str, event_id: str, index: int) -> str:
    """MSH-10: 20 base32 characters of a SHA-256 over the message's identity (deterministic)."""
    digest = hashlib.sha256(f"{site_id}|{manufacturer_id}|{order_id}|{event_id}|{index}".encode()).digest()
    return base64.b32encode(digest[:15]).decode("ascii")[:20]  # 20 characters = the first 12.5 bytes


def _namespace(hd: str) -> str:
    return hd.split("^", 1)[0]


def _common(order: OrderSnapshot, event: EventRecord, profile: SiteProfile, terminology: Terminology,
            issues: list[MappingIssue]) -> seg.Common:
    return order_common(order, profile, terminology, issues, status=event.status_after, at=event.occurred_at)


def filler_order_number(order: OrderSnapshot, settings: Hl7v2Settings) -> str:
    """ORC-3 / OBR-3 (EI): the site's own order number once it told us (``NA``), in the namespace of the
    site's application (``receiving_application``.1); until then our order id in the manufacturer's."""
    if order.site_order_number:
        return entity_id(order.site_order_number, _namespace(settings.receiving_application))
    return entity_id(order.order.order_id, order.manufacturer.id)


def order_common(order: OrderSnapshot, profile: SiteProfile, terminology: Terminology,
                 issues: list[MappingIssue], *, status: d.OrderStatus, at: datetime) -> seg.Common:
    """What every message about ``order`` shares, with the order in ``status`` as of ``at`` (ORC-9)."""
    settings = profile.hl7v2
    tables = load_hl7_tables()
    zone = site_zone(profile.timezone)
    o = order.order
    patient = o.patient
    cx = f"{escape(patient.mrn)}^^^{settings.pid3_assigning_authority or ''}^{settings.pid3_identifier_type}"
    if profile.patient.demographics == "full":
        pid = segment("PID", {1: "1", 3: cx, 5: person_name(patient.family, patient.given),
                              7: format_date(patient.birth_date), 8: SEX_CODES[patient.sex]})
    else:
        pid = segment("PID", {1: "1", 3: cx, 5: "^^^^^^U"})
    provider = o.ordering_provider
    xcn = f"{escape(provider.npi)}^{person_name(provider.family, provider.given)}"
    xcn += "^" * (8 - xcn.count("^")) + "NPI^^^^NPI"  # XCN.9 assigning authority, XCN.13 type
    mapping = profile.products.get(order.product.code)
    if mapping is not None:
        product = coded(mapping.local_code, mapping.display, tables.coding_system(mapping.system))
    else:
        product = coded(order.product.code, order.product.name, _OWN_CODING_SYSTEM)
        issues.append(MappingIssue(
            severity="warning", code="unmapped-code", path=f"profile.products.{order.product.code}",
            message="no local orderable for this product; OBR-4 carries the manufacturer's code"))
    override = profile.business_status.overrides.get(status.value)
    if override is not None:
        raw_status = (override.code, override.display or status.value, tables.coding_system(override.system))
    else:
        concept, issue = terminology.business_status_or_fallback(status.value, path="order.status")
        if issue is not None:
            issues.append(issue)
        raw_status = (concept.code, concept.display, _OWN_CODING_SYSTEM)
    coi_namespace = "ISBT128" if order.product.coi_format == "isbt128" else order.manufacturer.id
    return seg.Common(
        settings=settings, zone=zone, pid=pid,
        placer=entity_id(o.order_id, _namespace(settings.sending_application)),
        filler=filler_order_number(order, settings),
        coi=entity_id(order.coi, coi_namespace), coi_raw=order.coi, coi_format=order.product.coi_format,
        provider=xcn, product=product, priority=seg.PRIORITY_CODES[o.priority],
        business_status=coded(*raw_status), business_status_raw=raw_status,
        transaction_time=format_ts(at, zone), order_id=o.order_id,
        pv1=seg.build_pv1(settings.pv1) if settings.pv1 is not None else None,
        own_filler=entity_id(o.order_id, order.manufacturer.id),
    )


def _event_notes(order: OrderSnapshot, event: EventRecord, data: d.StrictModel) -> list[tuple[str, str]]:
    """(source, text) notes for the order message: the order note, reasons (first) and event details."""
    if isinstance(data, OrderPlacedData):
        return [("P", order.order.note)] if order.order.note else []
    if isinstance(data, OrderOnHoldData | OrderCancelledData):
        return [("L", data.reason)]
    if isinstance(data, ApheresisRescheduledData):
        return [("L", data.reason)] if data.reason else []
    if isinstance(data, ApheresisScheduledData):
        return [("L", f"Apheresis location: {data.location}")] if data.location else []
    if isinstance(data, ReleaseFailedData):
        return [("L", data.reason), ("L", f"Disposition: {data.disposition}")]
    if isinstance(data, CustodyTransferredData):
        text = f"Custody transferred from {data.from_party} to {data.to_party}"
        if data.location:
            text += f" at {data.location}"
        return [("L", text)]
    if isinstance(data, ManufacturingStartedData | ManufacturingCompletedData) and data.lot:
        return [("L", f"Lot: {data.lot}")]
    if isinstance(data, ShipmentDispatchedData):
        parts = [p for p in (data.carrier, data.tracking_number) if p]
        return [("L", "Shipment: " + " ".join(parts))] if parts else []
    return []


def _order_message(common: seg.Common, order: OrderSnapshot, event: EventRecord,
                   data: d.StrictModel) -> Draft:
    settings = common.settings
    oml = settings.order_message == "OML^O21"
    with_tq1 = oml and settings.version == "2.5.1"
    control = order_control(event.type, event.status_after)
    reason = getattr(data, "reason", None)
    segments = [list(common.pid), seg.build_orc(common, control, order_status(event.type, event.status_after),
                                                with_quantity_timing=not with_tq1)]
    if with_tq1:
        segments.append(seg.build_tq1(common))
    segments.append(seg.build_obr(common, with_quantity_timing=not with_tq1))
    for set_id, (source, text) in enumerate(_event_notes(order, event, data), start=1):
        segments.append(seg.build_nte(common, set_id, text, source, "1R" if text == reason else "RE"))
    if settings.coi_location == "OBX":
        segments.append(seg.build_coi_obx(common, 1))
    structure = "OML_O21" if oml else "ORM_O01"
    return Draft(settings.order_message, structure, segments)


def _measurements(data: d.StrictModel) -> tuple[str, Sequence[Measurement]]:
    if isinstance(data, CollectionCompletedData):
        return "event.data.measurements", data.measurements
    if isinstance(data, ReleasePassedData | ReleaseFailedData):
        return "event.data.results", data.results
    return "", ()


def _results_message(common: seg.Common, event: EventRecord, data: d.StrictModel, profile: SiteProfile,
                     terminology: Terminology, issues: list[MappingIssue]) -> Draft | None:
    path, measurements = _measurements(data)
    if not measurements:
        return None
    observed_at = data.collected_at if isinstance(data, CollectionCompletedData) else event.occurred_at
    observed = format_ts(observed_at, common.zone)
    legacy = common.settings.version != "2.5.1"
    segments = [
        list(common.pid),
        seg.build_orc(common, ORDER_CONTROL_RESULTS, order_status(event.type, event.status_after),
                      with_quantity_timing=legacy),
        seg.build_obr(common, observed_at=observed, result_status=RESULT_STATUS_FINAL,
                      with_quantity_timing=legacy),
    ]
    if isinstance(data, ReleaseFailedData):
        segments.append(seg.build_nte(common, 1, data.reason, comment_type="1R"))
    observations = render_observations(
        measurements, path=path, observed_at=observed_at, first_set_id=1, profile=profile,
        terminology=terminology, zone=common.zone, issues=issues)
    segments.extend(observations)
    if common.settings.coi_location == "OBX":
        segments.append(seg.build_coi_obx(common, len(observations) + 1))
    return Draft("ORU^R01", "ORU_R01", segments)


def _latest_din(order: OrderSnapshot, event: EventRecord) -> str | None:
    for record in reversed(order.events):
        if record.type is EventType.collection_completed and record.sequence <= event.sequence:
            din = record.data.get("din")
            return cast(str, din) if din else None
    return None


def _product_status_message(common: seg.Common, order: OrderSnapshot, event: EventRecord) -> Draft | None:
    status_time = common.transaction_time
    status = order_status(event.type, event.status_after)
    orc = seg.build_orc(common, ORDER_CONTROL_PRODUCT_STATUS, status, with_quantity_timing=False)
    din = _latest_din(order, event)
    if event.type in DISPENSE_STATUS_BY_EVENT:
        bpx = seg.build_bpx(common, DISPENSE_STATUS_BY_EVENT[event.type], status_time, din)
        return Draft("BPS^O29", "BPS_O29", [list(common.pid), orc, seg.build_bpo(common), bpx])
    if event.type in TRANSFUSION_STATUS_BY_EVENT:
        btx = seg.build_btx(common, TRANSFUSION_STATUS_BY_EVENT[event.type], status_time, din)
        return Draft("BTS^O31", "BTS_O31", [list(common.pid), orc, seg.build_bpo(common), btx])
    return None


def _scheduling_messages(common: seg.Common, order: OrderSnapshot, event: EventRecord,
                         data: d.StrictModel) -> list[Draft]:
    drafts: list[Draft] = []
    if event.type in SCHEDULING_BY_EVENT:
        appointment, trigger = SCHEDULING_BY_EVENT[event.type]
        assert isinstance(data, _APHERESIS_DATA | InfusionScheduledData)
        end = data.end if isinstance(data, _APHERESIS_DATA) else None
        reason = data.reason if isinstance(data, ApheresisRescheduledData) else None
        start = data.start
        segments = render_siu(common, appointment, trigger, start=start, end=end, reason=reason)
        drafts.append(Draft(f"SIU^{trigger}", "SIU_S12", segments))
    elif event.type is EventType.order_cancelled:
        reason = cast(OrderCancelledData, data).reason
        pending: list[tuple[Appointment, datetime, datetime | None]] = pending_appointments(order, event)
        for appointment, start, end in pending:
            segments = render_siu(common, appointment, "S15", start=start, end=end, reason=reason)
            drafts.append(Draft("SIU^S15", "SIU_S12", segments))
    return drafts


def _finish(drafts: list[Draft], fits: list[Fitted], order: OrderSnapshot, event: EventRecord,
            profile: SiteProfile, now: datetime) -> tuple[Hl7Message, ...]:
    settings = profile.hl7v2
    timestamp = format_ts(now, site_zone(profile.timezone))
    messages = []
    for index, (draft, fitted) in enumerate(zip(drafts, fits, strict=True)):
        ctrl = control_id(profile.site_id, order.manufacturer.id, order.order.order_id, event.event_id, index)
        msh = seg.build_msh(settings, timestamp, draft.message_type, draft.structure, ctrl)
        er7 = "\r".join(serialize(s) for s in [msh, *draft.segments]) + "\r"
        refused = draft.refused or refusal_reason(fitted, settings.charset)
        messages.append(Hl7Message(message_type=draft.message_type, control_id=ctrl, er7=er7,
                                   version=settings.version, refused=refused))
    return tuple(messages)


def _add_pv1(drafts: list[Draft], common: seg.Common) -> None:
    """PV1 right after PID in every message (each structure we send has a patient visit there)."""
    if common.pv1 is None:
        return
    for draft in drafts:
        at = next((i for i, s in enumerate(draft.segments) if s[0] == "PID"), None)
        if at is not None:
            draft.segments.insert(at + 1, list(common.pv1))


def render_messages(order: OrderSnapshot, event: EventRecord, profile: SiteProfile, terminology: Terminology,
                    now: datetime, *, template_limits: TemplateLimits | None = None,
                    ) -> tuple[tuple[Hl7Message, ...], tuple[MappingIssue, ...]]:
    """The HL7v2 messages the site receives for ``event`` (none when ``hl7v2.enabled`` is false)."""
    settings = profile.hl7v2
    if not settings.enabled:
        return (), ()
    issues: list[MappingIssue] = []
    common = _common(order, event, profile, terminology, issues)
    data = event.typed_data()
    drafts = [_order_message(common, order, event, data)]
    if settings.results:
        results = _results_message(common, event, data, profile, terminology, issues)
        if results is not None:
            drafts.append(results)
    if settings.scheduling and not event.late:  # a late booking is history, not an appointment
        drafts.extend(_scheduling_messages(common, order, event, data))
    if settings.blood_product_status:
        product_status = _product_status_message(common, order, event)
        if product_status is not None:
            drafts.append(product_status)
    for draft in drafts:
        if settings.coi_location == "ZCG" or (
            settings.coi_location == "OBX" and draft.structure in ("BPS_O29", "BTS_O31")
        ):
            draft.segments.append(seg.build_zcg(common))
    return finish_drafts(drafts, common, order, event, profile, now, issues,
                         template_limits=template_limits), tuple(issues)


def finish_drafts(drafts: list[Draft], common: seg.Common, order: OrderSnapshot, event: EventRecord,
                  profile: SiteProfile, now: datetime, issues: list[MappingIssue], *,
                  template_limits: TemplateLimits | None = None,
                  codes: dict[str, Any] | None = None) -> tuple[Hl7Message, ...]:
    """The last steps every message takes, in this order: PV1, the profile's override templates (``codes``
    added to their ``codes`` context), the site's character set (so override output fits it too), MSH."""
    settings = profile.hl7v2
    _add_pv1(drafts, common)
    if settings.overrides:
        context = _template_context(order, event, profile, common)
        if codes:
            context["codes"] = {**context["codes"], **codes}
        values = render_overrides(settings.overrides, context, issues, template_limits)
        for draft in drafts:
            changed = overridden_identifiers(draft.segments, values)
            if changed:
                draft.refused = (f"override of identifier {', '.join(changed)} would change the identifier "
                                 "(an override may add components, never replace the identifier)")
                issues.append(MappingIssue(
                    severity="error", code="hl7v2-identifier-overridden",
                    path=f"profile.hl7v2.overrides.{changed[0]}",
                    message=f"{draft.message_type} not sent: {draft.refused}"))
            apply_overrides(draft.segments, values)
    fits = [fit_segments(draft.segments, settings.charset, settings.charset_fallback) for draft in drafts]
    issues += charset_issues([(d.message_type, f) for d, f in zip(drafts, fits, strict=True)],
                             settings.charset, settings.charset_fallback)
    return _finish(drafts, fits, order, event, profile, now)


def _patient_context(order: OrderSnapshot, profile: SiteProfile) -> dict[str, Any]:
    patient = order.order.patient
    if profile.patient.demographics != "full":
        return {"mrn": patient.mrn}
    return {"mrn": patient.mrn, "family": patient.family, "given": list(patient.given),
            "birth_date": format_date(patient.birth_date), "sex": patient.sex}


def _optional_date(day: date | None) -> str | None:
    return format_date(day) if day is not None else None


def _template_context(order: OrderSnapshot, event: EventRecord, profile: SiteProfile,
                      common: seg.Common) -> dict[str, Any]:
    """What override templates may read (see ``mappings.profile.templates.context_schema``).

    With ``demographics: mrn_only`` the patient holds only the MRN: no name, birth date or sex can
    reach the site through an override either.
    """
    o = order.order
    zone = common.zone
    mapping = profile.products.get(order.product.code)
    business = common.business_status_raw
    return {
        "order": {
            "order_id": o.order_id, "coi": order.coi, "product_code": o.product_code, "priority": o.priority,
            "note": o.note, "status": order.status.value, "placer_order_number": o.order_id,
            "filler_order_number": order.site_order_number or o.order_id,
            "created_at": format_ts(order.created_at, zone),
            "patient": _patient_context(order, profile),
            "ordering_provider": {"npi": o.ordering_provider.npi, "family": o.ordering_provider.family,
                                  "given": list(o.ordering_provider.given)},
            "requested": {
                "apheresis_date": _optional_date(o.requested.apheresis_date),
                "infusion_date": _optional_date(o.requested.infusion_date),
            },
        },
        "event": {
            "event_id": event.event_id, "type": event.type.value,
            "occurred_at": format_ts(event.occurred_at, zone), "sequence": event.sequence,
            "late": event.late, "status_after": event.status_after.value, "data": dict(event.data),
        },
        "product": {
            "code": order.product.code, "name": order.product.name,
            "local_code": mapping.local_code if mapping else order.product.code,
            "display": mapping.display if mapping else order.product.name,
            "system": mapping.system if mapping else None,
        },
        "manufacturer": {"id": order.manufacturer.id, "name": order.manufacturer.name},
        "site": {"id": order.site.id, "name": order.site.name},
        "codes": {
            "order_control": order_control(event.type, event.status_after),
            "order_status": order_status(event.type, event.status_after),
            "business_status": {"code": business[0], "display": business[1], "system": business[2]},
        },
    }
