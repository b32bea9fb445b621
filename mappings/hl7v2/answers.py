"""The HL7v2 answer a site receives once its request is decided (HL7 table 0119 filler answers).

One message in the site's order message type (``OML^O21`` or ``ORM^O01``, the site's version), built
from the same builders and site profile as every order message (MSH, PID, PV1, ORC, TQ1, OBR, the
CoI where the profile puts it, overrides, character set), with:

* ORC-1 the answer (:func:`mappings.site_request.answer_control`): ``CR`` canceled as requested /
  ``UC`` unable to cancel, ``HR`` on hold as requested / ``UH`` unable to put on hold, ``OR``
  released as requested / ``UR`` unable to release, ``XR`` changed as requested / ``UX`` unable to
  change;
* ORC-5 the order's current status (table 0038, :data:`~mappings.hl7v2.event_map.ORDER_STATUS_BY_STATUS`);
* ORC-9 the time the answer is rendered (``now``);
* ORC-16 the decision's reason as CE/CWE ``^<text>`` (text only, escaped; empty without a reason;
  cut to :data:`CONTROL_REASON_MAX` encoded characters with ``...``, the ST limit of CE/CWE.2), and
  the same reason in full in an NTE (``1R``) after OBR, as every reason we send;
* MSH-10 :func:`~mappings.hl7v2.render.control_id` over ``<request_id>#site-request-<state>``
  (``#`` occurs in no event id), so the answer to one request in one state always has the same
  control id and never collides with an event's or a retraction's.

A request that is not decided, or whose kind has no order-control answer (``order_number``,
``infused``), gets no message, and neither does a site with ``hl7v2.enabled: false``.
"""

from __future__ import annotations

from datetime import datetime

from mappings.er7.charsets import CharsetFallback, python_codec
from mappings.er7.escape import escape
from mappings.hl7v2 import segments as seg
from mappings.hl7v2.charset import transliterate
from mappings.hl7v2.event_map import ORDER_STATUS_BY_STATUS
from mappings.hl7v2.render import Draft, finish_drafts, order_common
from mappings.profile.schema import SiteProfile
from mappings.profile.templates import TemplateLimits
from mappings.result import Hl7Message, MappingIssue
from mappings.site_request import SiteRequestView, answer_control
from mappings.snapshot import OrderSnapshot
from terminology import Terminology

__all__ = ["ANSWER_KEY_INFIX", "CONTROL_REASON_MAX", "answer_key", "control_reason", "render_answer"]

ANSWER_KEY_INFIX = "#site-request-"
#: ORC-16.2 (CE/CWE text, an ST) holds at most 199 characters in 2.3, 2.4 and 2.5.1.
CONTROL_REASON_MAX = 199
_CUT = "..."


def control_reason(reason: str | None, charset: str | None = None,
                   fallback: CharsetFallback = "transliterate") -> str:
    """ORC-16 of an answer: ``^<reason>`` escaped, the text at most :data:`CONTROL_REASON_MAX` characters
    as sent (an escape sequence is never cut; with ``transliterate`` the text is fitted to the site's
    character set first, since the nearest spelling may be longer); empty without a reason."""
    if not reason:
        return ""
    codec = python_codec(charset)
    if codec != "utf-8" and fallback == "transliterate":
        reason, _ = transliterate(reason, codec)
    text = escape(reason)
    if len(text) > CONTROL_REASON_MAX:
        pieces: list[str] = []
        size = 0
        for char in reason:
            piece = escape(char)
            if size + len(piece) > CONTROL_REASON_MAX - len(_CUT):
                break
            pieces.append(piece)
            size += len(piece)
        text = "".join(pieces) + _CUT
    return f"^{text}"


def answer_key(request_id: str, state: str) -> str:
    """What MSH-10 of the answer derives from (in place of an event id): unique per request and state."""
    return f"{request_id}{ANSWER_KEY_INFIX}{state}"


def render_answer(
    order: OrderSnapshot,
    request: SiteRequestView,
    profile: SiteProfile,
    terminology: Terminology,
    now: datetime,
    *,
    template_limits: TemplateLimits | None = None,
) -> tuple[Hl7Message | None, tuple[MappingIssue, ...]]:
    """The answer to ``request`` about ``order`` as it now stands (None: no answer is due)."""
    settings = profile.hl7v2
    granted = request.granted
    if not settings.enabled or granted is None:
        return None, ()
    control = answer_control(request.kind, granted)
    if control is None:
        return None, ()
    if not order.events:
        raise ValueError("the order has no accepted event (order.placed comes first)")
    issues: list[MappingIssue] = []
    common = order_common(order, profile, terminology, issues, status=order.status, at=now)
    status = ORDER_STATUS_BY_STATUS[order.status]
    reason = request.decision_reason
    oml = settings.order_message == "OML^O21"
    with_tq1 = oml and settings.version == "2.5.1"
    segments = [list(common.pid), seg.build_orc(common, control, status, with_quantity_timing=not with_tq1,
                                                control_reason=control_reason(reason, settings.charset,
                                                                               settings.charset_fallback))]
    if with_tq1:
        segments.append(seg.build_tq1(common))
    segments.append(seg.build_obr(common, with_quantity_timing=not with_tq1))
    if reason:
        segments.append(seg.build_nte(common, 1, reason, "L", "1R"))
    if settings.coi_location == "OBX":
        segments.append(seg.build_coi_obx(common, 1))
    if settings.coi_location == "ZCG":
        segments.append(seg.build_zcg(common))
    draft = Draft(settings.order_message, "OML_O21" if oml else "ORM_O01", segments)
    # The order's newest event stands in for the event in the control id and the override templates'
    # context, keyed by the request and its state, at the answer's time, with the order's status.
    latest = order.events[-1]
    marker = latest.model_copy(update={"event_id": answer_key(request.request_id, request.state),
                                       "occurred_at": now, "status_after": order.status})
    codes = {"order_control": control, "order_status": status}
    messages = finish_drafts([draft], common, order, marker, profile, now, issues,
                             template_limits=template_limits, codes=codes)
    return messages[0], tuple(issues)
