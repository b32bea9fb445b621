"""The HL7v2 correction a site receives when an event is retracted (entered in error).

* A status message: the site's order message (``OML^O21``/``ORM^O01``) with ORC-1 ``SC`` and ORC-5
  the order status recomputed without the retracted event (table 0038, as for any status change),
  ORC-9 the retraction time, and an NTE (``1R``) saying which event was entered in error and why.
* When the retracted event carried results that the site received as ``ORU^R01`` (collection
  measurements, release results): the same ``ORU^R01`` again with every result OBX-11 ``W``
  ("post original as wrong", table 0085) and OBR-25 ``C`` (correction, table 0123), the same NTE
  first.  The CoI OBX is not a result and stays ``F``.
* When the profile sends scheduling (SIU) and the retraction changes an appointment the site was
  told about: ``SIU^S15`` cancels one that only the retracted event booked, ``SIU^S13`` moves one
  back to the time the remaining events give it, ``SIU^S12`` books again one the retracted event had
  ended or cancelled (an erroneous ``collection.completed``, ``product.infused`` or
  ``order.cancelled``); the NTE gives the retraction.

The segments come from the same builders and site profile as every other message (profile
overrides included); MSH-10 derives from the retracted event id plus ``#retraction`` (``#`` cannot
occur in an event id), so the correction's control ids never collide with the event's own.
"""

from __future__ import annotations

from datetime import datetime

from mappings.domain import OrderStatus
from mappings.event_data import typed_data
from mappings.events import EventRecord
from mappings.hl7v2 import segments as seg
from mappings.hl7v2.event_map import ORDER_STATUS_BY_STATUS, Appointment
from mappings.hl7v2.fields import Segment
from mappings.hl7v2.render import Draft, _common, _results_message, finish_drafts
from mappings.hl7v2.scheduling import pending_appointments, render_siu
from mappings.hl7v2.segments import COI_CODE
from mappings.profile.schema import SiteProfile
from mappings.profile.template_sandbox import TemplateLimits
from mappings.result import Hl7Message, MappingIssue
from mappings.snapshot import OrderSnapshot
from terminology import Terminology

__all__ = ["render_retraction_messages", "retraction_note", "RETRACTION_SUFFIX", "RESULT_STATUS_WRONG",
           "RESULT_STATUS_CORRECTED", "ORDER_CONTROL_STATUS_CHANGED"]

RETRACTION_SUFFIX = "#retraction"
RESULT_STATUS_WRONG = "W"  # OBX-11, table 0085
RESULT_STATUS_CORRECTED = "C"  # OBR-25, table 0123
ORDER_CONTROL_STATUS_CHANGED = "SC"


def retraction_note(retracted: EventRecord, reason: str) -> str:
    return f"Event {retracted.event_id} ({retracted.type.value}) was entered in error and retracted: {reason}"


def _with_note(common: seg.Common, segments: list[Segment], note: str) -> list[Segment]:
    """``segments`` with the retraction NTE right after OBR (later NTE set ids shifted by one)."""
    out: list[Segment] = []
    for segment in segments:
        if segment[0] == "NTE":
            segment = [*segment]
            segment[1] = str(int(segment[1]) + 1)
        out.append(segment)
        if segment[0] == "OBR":
            out.append(seg.build_nte(common, 1, note, "L", "1R"))
    return out


def _as_wrong(segments: list[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for segment in segments:
        segment = [*segment]
        if segment[0] == "OBX" and segment[3] != COI_CODE:
            segment += [""] * (12 - len(segment))
            segment[11] = RESULT_STATUS_WRONG
        elif segment[0] == "OBR":
            segment += [""] * (26 - len(segment))
            segment[25] = RESULT_STATUS_CORRECTED
        out.append(segment)
    return out


_Booking = tuple[datetime, datetime | None]


def _booked(order: OrderSnapshot) -> dict[Appointment, _Booking]:
    """The appointments the site holds as booked for ``order`` (a cancellation sent S15 for each)."""
    if order.status is OrderStatus.cancelled or not order.events:
        return {}
    beyond = order.events[-1].model_copy(update={"sequence": order.events[-1].sequence + 1})
    return {kind: (start, end) for kind, start, end in pending_appointments(order, beyond)}


def _scheduling_corrections(common: seg.Common, before: OrderSnapshot, after: OrderSnapshot,
                            note: str) -> list[Draft]:
    was, now = _booked(before), _booked(after)
    drafts: list[Draft] = []
    kinds: tuple[Appointment, ...] = ("apheresis", "infusion")
    for kind in kinds:
        old, new = was.get(kind), now.get(kind)
        if old == new:
            continue
        if new is None:
            assert old is not None
            trigger, (start, end) = "S15", old
        else:
            trigger, (start, end) = ("S12" if old is None else "S13"), new
        segments = render_siu(common, kind, trigger, start=start, end=end, reason=note)
        drafts.append(Draft(f"SIU^{trigger}", "SIU_S12", segments))
    return drafts


def render_retraction_messages(
    before: OrderSnapshot,
    after: OrderSnapshot,
    retracted: EventRecord,
    *,
    reason: str,
    retracted_at: datetime,
    profile: SiteProfile,
    terminology: Terminology,
    now: datetime,
    template_limits: TemplateLimits | None = None,
) -> tuple[tuple[Hl7Message, ...], tuple[MappingIssue, ...]]:
    """The correction messages for ``retracted`` (``before``/``after``: the order with and without it)."""
    settings = profile.hl7v2
    if not settings.enabled:
        return (), ()
    issues: list[MappingIssue] = []
    # The retracted event as the order now stands: the recomputed status, at the retraction time.
    marker = retracted.model_copy(update={
        "event_id": retracted.event_id + RETRACTION_SUFFIX, "status_after": after.status,
        "occurred_at": retracted_at})
    common = _common(after, marker, profile, terminology, issues)
    note = retraction_note(retracted, reason)
    oml = settings.order_message == "OML^O21"
    with_tq1 = oml and settings.version == "2.5.1"
    status = ORDER_STATUS_BY_STATUS[after.status]
    segments = [list(common.pid), seg.build_orc(common, ORDER_CONTROL_STATUS_CHANGED, status,
                                                with_quantity_timing=not with_tq1)]
    if with_tq1:
        segments.append(seg.build_tq1(common))
    segments.append(seg.build_obr(common, with_quantity_timing=not with_tq1))
    segments.append(seg.build_nte(common, 1, note, "L", "1R"))
    if settings.coi_location == "OBX":
        segments.append(seg.build_coi_obx(common, 1))
    drafts = [Draft(settings.order_message, "OML_O21" if oml else "ORM_O01", segments)]
    data = typed_data(retracted)
    if settings.results and data is not None:
        # The results as first sent (their observation times), with the order's recomputed status.
        results = _results_message(common, retracted.model_copy(update={"status_after": after.status}),
                                   data, profile, terminology, [])
        if results is not None:
            results.segments = _with_note(common, _as_wrong(results.segments), note)
            drafts.append(results)
    if settings.scheduling:
        drafts.extend(_scheduling_corrections(common, before, after, note))
    for draft in drafts:
        if settings.coi_location == "ZCG":
            draft.segments.append(seg.build_zcg(common))
    codes = {"order_control": ORDER_CONTROL_STATUS_CHANGED, "order_status": status}
    messages = finish_drafts(drafts, common, after, marker, profile, now, issues,
                             template_limits=template_limits, codes=codes)
    return messages, tuple(issues)
