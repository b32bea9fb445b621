"""Translation of a site request: what the site sees of its own request, and the answer to it.

``translate_site_request(snapshot, request, profile, terminology, now)`` is pure, like
:func:`mappings.translate.translate`, and returns the same :class:`~mappings.result.Translation`.
``snapshot`` is the order as it stands when the request is translated (after the change, when the
request was applied or accepted).  It returns:

1. for a kind with a FHIR task code (:data:`mappings.site_request.TASK_CODE`: cancel, hold,
   release_hold, reschedule, change) the **request Task** (:mod:`mappings.fhir.site_request`) in
   every state: ``status`` pending -> ``requested``, awaiting-manufacturer -> ``received``,
   applied/accepted -> ``completed``, declined -> ``rejected``; ``statusReason.text`` the decision's
   reason once decided; ``focus`` the order's fulfilment Task, ``for`` its patient (a reference
   only: no name, whatever the profile's ``patient.demographics``), ``requester`` the site's
   Organization, ``owner`` the manufacturer's, ``authoredOn`` when received, ``lastModified`` when
   decided (else received); ``input`` the requested start/end (``valueDateTime``), the appointment,
   the appointment action (SIU: booked/rescheduled/modified/cancelled) and the site's reason
   (``valueString``), each with a ``type.text``;
2. for a decided request whose kind has an order-control answer, the **HL7v2 answer**
   (:func:`mappings.hl7v2.answers.render_answer`: ORC-1 CR/UC/HR/UH/OR/UR/XR/UX, ORC-5 the order's
   status, ORC-9 ``now``, ORC-16 the reason); none when the profile's ``hl7v2.enabled`` is false;
3. for an applied (or accepted) ``order_number``, the order's **ServiceRequest** with the site's own
   order number as a ``FILL`` identifier (:func:`mappings.fhir.order.site_order_identifier`),
   otherwise as :func:`~mappings.translate.translate` builds it.  The number is
   ``request.requested["site_order_number"]``, else ``snapshot.site_order_number``;
4. for an applied (or accepted) ``infused`` request the site sent as a FHIR Procedure
   (``channel == "fhir"``), the site's **Procedure** as stored
   (:func:`mappings.fhir.site_procedure.build_site_procedure`: ``basedOn`` the ServiceRequest,
   ``subject`` the patient, ``performedDateTime`` the requested ``administered_at``, the site's reason
   as ``note``); none while it awaits the manufacturer or once declined.

FHIR times come from the request (``received_at``, ``decided_at``), never from ``now``, so
translating the same request in the same state again gives the same resources.

Ids: the request Task's id is ``request.task_id`` when the service set it, else
:func:`mappings.fhir.site_request.request_task_id` (``uuid5`` of
``Task|<order system>/<order id>/site-request|<request_id>``); its identifier is the request id in
:data:`~mappings.fhir.site_request.SITE_REQUEST_SYSTEM`.  The answer's MSH-10 derives from
``<request_id>#site-request-<state>`` (:func:`mappings.hl7v2.answers.answer_key`).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from mappings.fhir.model import fhir_instant
from mappings.fhir.site_procedure import build_site_procedure, site_procedure_id
from mappings.fhir.site_request import (
    REQUEST_TASK_STATUS,
    RequestInput,
    build_request_task,
    request_task_id,
)
from mappings.hl7v2.answers import render_answer
from mappings.ids import reference
from mappings.profile.schema import SiteProfile
from mappings.profile.templates import TemplateLimits
from mappings.result import Hl7Message, MappingIssue, Translation
from mappings.site_request import TASK_CODE, SiteRequestView, answer_control
from mappings.snapshot import OrderSnapshot
from mappings.translate import translate
from mappings.translate_journey import Journey
from terminology import Terminology

__all__ = ["translate_site_request", "request_task_id"]

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_APPOINTMENTS = ("apheresis", "infusion")


def translate_site_request(
    snapshot: OrderSnapshot,
    request: SiteRequestView,
    profile: SiteProfile,
    terminology: Terminology,
    now: datetime,
    *,
    template_limits: TemplateLimits | None = None,
) -> Translation:
    """The request Task, the ServiceRequest (``order_number``) and the HL7v2 answer of ``request``.

    ``now`` is used only for the HL7v2 answer (MSH-7, ORC-9).  Raises ``ValueError`` when the
    request is not about ``snapshot``'s order or the order has no accepted event (a caller's bug).
    """
    if request.order_id != snapshot.order.order_id or request.manufacturer_id != snapshot.manufacturer.id:
        raise ValueError("the site request is not about this order")
    if not snapshot.events:
        raise ValueError("the order has no accepted event (order.placed comes first)")
    issues: list[MappingIssue] = []
    resources: list[dict[str, Any]] = []
    snapshot = _with_site_order_number(snapshot, request)
    journey = Journey(snapshot, snapshot.events[-1], profile)
    task_id: str | None = None
    task_code = TASK_CODE.get(request.kind)
    if task_code is not None:
        task = _request_task(journey, request, task_code, issues)
        task_id = task["id"]
        resources.append(task)
    if request.kind == "order_number" and request.granted:
        found, sr_issues = _service_request(snapshot, profile, terminology, now)
        issues += sr_issues
        resources += found
    procedure_id: str | None = None
    if request.kind == "infused" and request.channel == "fhir" and request.granted:
        procedure = _procedure(journey, request, issues)
        if procedure is not None:
            procedure_id = procedure["id"]
            resources.append(procedure)
    answer, hl7_issues = render_answer(snapshot, request, profile, terminology, now,
                                       template_limits=template_limits)
    issues += hl7_issues
    messages: tuple[Hl7Message, ...] = (answer,) if answer is not None else ()
    granted = request.granted
    return Translation(
        resources=tuple(resources),
        messages=messages,
        issues=tuple(issues),
        profile_version=profile.version,
        extra={
            "request_id": request.request_id,
            "request_task_id": task_id,
            "procedure_id": procedure_id,
            "answer_control": answer_control(request.kind, granted) if granted is not None else None,
            "service_request_id": journey.service_request_id,
            "task_id": journey.task_id,
            "patient_id": journey.patient_id,
        },
    )


def _with_site_order_number(snapshot: OrderSnapshot, request: SiteRequestView) -> OrderSnapshot:
    """The order with the number an applied ``order_number`` request told us (if it is not there yet)."""
    if request.kind != "order_number" or not request.granted:
        return snapshot
    number = request.requested.get("site_order_number")
    if isinstance(number, str) and number and number != snapshot.site_order_number:
        return snapshot.model_copy(update={"site_order_number": number})
    return snapshot


def _service_request(snapshot: OrderSnapshot, profile: SiteProfile, terminology: Terminology,
                     now: datetime) -> tuple[list[dict[str, Any]], list[MappingIssue]]:
    if not snapshot.site_order_number:
        return [], [MappingIssue("error", "site-order-number-missing", "request.requested.site_order_number",
                                 "the order_number request carries no site order number; "
                                 "the ServiceRequest is unchanged")]
    quiet = profile.model_copy(update={"hl7v2": profile.hl7v2.model_copy(update={"enabled": False})})
    current = translate(snapshot, snapshot.events[-1], quiet, terminology, now)
    return [r for r in current.resources if r["resourceType"] == "ServiceRequest"], []


def _request_task(journey: Journey, request: SiteRequestView, task_code: str,
                  issues: list[MappingIssue]) -> dict[str, Any]:
    snapshot = journey.snapshot
    decided = request.granted is not None
    received_at = fhir_instant(request.received_at)
    last = request.decided_at if decided and request.decided_at is not None else request.received_at
    return build_request_task(
        request.task_id
        or request_task_id(snapshot.manufacturer.id, snapshot.order.order_id, request.request_id),
        request_id=request.request_id,
        task_code=task_code,
        status=REQUEST_TASK_STATUS[request.state],
        status_reason=request.decision_reason if decided else None,
        focus=reference("Task", journey.task_id),
        patient=journey.patient_ref,
        requester=journey.site_ref,
        owner=journey.manufacturer_ref,
        authored_on=received_at,
        last_modified=fhir_instant(last),
        inputs=_inputs(request, issues),
        profile_version=journey.profile.version,
    )


def _procedure(journey: Journey, request: SiteRequestView,
               issues: list[MappingIssue]) -> dict[str, Any] | None:
    """The site's Procedure of an applied ``infused`` request (the time as the site sent it)."""
    performed = request.requested.get("administered_at")
    if not isinstance(performed, str) or _DATE.match(performed):
        issues.append(MappingIssue("error", "invalid-requested-time", "request.requested.administered_at",
                                   "not an ISO 8601 date-time; no Procedure stored"))
        return None
    try:
        datetime.fromisoformat(performed)
    except ValueError:
        issues.append(MappingIssue("error", "invalid-requested-time", "request.requested.administered_at",
                                   "not an ISO 8601 date-time; no Procedure stored"))
        return None
    snapshot = journey.snapshot
    return build_site_procedure(
        site_procedure_id(snapshot.manufacturer.id, snapshot.order.order_id, request.request_id),
        request_id=request.request_id,
        service_request=journey.service_request_ref,
        patient=journey.patient_ref,
        performer=journey.site_ref,
        performed=performed,
        note=request.reason,
        profile_version=journey.profile.version,
    )


def _requested_time(request: SiteRequestView, key: str, issues: list[MappingIssue]) -> str | None:
    """``requested[key]`` as a FHIR dateTime (a date stays a date, a time becomes a UTC instant)."""
    value = request.requested.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        if _DATE.match(value):
            return value
        try:
            return fhir_instant(datetime.fromisoformat(value))
        except ValueError:
            pass
    issues.append(MappingIssue("warning", "invalid-requested-time", f"request.requested.{key}",
                               "not an ISO 8601 date or date-time; left out of the request Task"))
    return None


def _inputs(request: SiteRequestView, issues: list[MappingIssue]) -> list[RequestInput]:
    requested = request.requested.get("appointment")
    appointment = requested if requested in _APPOINTMENTS else None
    what = f"{appointment} " if appointment else ""
    inputs = []
    if appointment is not None:
        inputs.append(RequestInput("requested-appointment", "Appointment the site asks to change",
                                   string=appointment))
    action = request.requested.get("appointment_action")
    if isinstance(action, str) and action:
        inputs.append(RequestInput("appointment-action", "Appointment action the site sent", string=action))
    start = _requested_time(request, "start", issues)
    if start is not None:
        inputs.append(RequestInput("requested-start", f"Requested {what}start", date_time=start))
    end = _requested_time(request, "end", issues)
    if end is not None:
        inputs.append(RequestInput("requested-end", f"Requested {what}end", date_time=end))
    if request.reason:
        inputs.append(RequestInput("site-reason", "Reason given by the site", string=request.reason))
    return inputs
