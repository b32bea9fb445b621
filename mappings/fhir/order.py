"""ServiceRequest (the order) and Task (its fulfilment, FHIR workflow option G) builders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mappings.fhir.codes import TASK_CODE_SYSTEM, TASK_INPUT_SYSTEM
from mappings.fhir.model import profile_meta, validated
from mappings.fhir.parties import identifier
from mappings.ids import SITE_SYSTEM
from mappings.profile.schema import SiteProfile

__all__ = ["Period", "TaskInput", "build_task_input", "build_service_request", "build_task",
           "site_order_system", "site_order_identifier"]


def site_order_system(profile: SiteProfile) -> str:
    """The system of the site's own order number: the profile's ``orders.site_order_system``, else ours."""
    return profile.orders.site_order_system or f"{SITE_SYSTEM}/{profile.site_id}/order-number"


def site_order_identifier(profile: SiteProfile, site_order_number: str) -> dict[str, Any]:
    """The ServiceRequest identifier of the site's own order number (told by HL7v2 ``NA``).

    Typed ``FILL`` (v2-0203 filler identifier): the site is the filler of the order we place in its
    EHR, and this number is what HL7v2 ORC-3 / OBR-3 carry from then on.  It is added after the
    placer and filler identifiers of our order id, which stay (searches by them keep working).
    """
    return identifier(site_order_system(profile), site_order_number, "FILL")


@dataclass(frozen=True)
class Period:
    """FHIR Period with already formatted dateTime strings (either end may be open)."""

    start: str | None = None
    end: str | None = None

    def as_fhir(self) -> dict[str, str] | None:
        period = {k: v for k, v in (("start", self.start), ("end", self.end)) if v}
        return period or None


@dataclass(frozen=True)
class TaskInput:
    """One ``Task.input`` in our cgt-task-input CodeSystem; exactly one value is set."""

    code: str
    display: str
    date_time: str | None = None
    string: str | None = None
    reference: dict[str, str] | None = None

    def as_fhir(self) -> dict[str, Any]:
        return build_task_input(self.code, self.display, date_time=self.date_time, reference=self.reference,
                                string=self.string)


def build_task_input(code: str, display: str, *, text: str | None = None, date_time: str | None = None,
                     reference: dict[str, str] | None = None, string: str | None = None) -> dict[str, Any]:
    """One ``Task.input`` (or ``output``): its type ``code`` in our cgt-task-input CodeSystem (with
    ``text`` when given), and one value: ``valueDateTime`` if ``date_time``, else ``valueReference`` if
    ``reference``, else ``valueString`` (empty when ``string`` is None)."""
    kind: dict[str, Any] = {"coding": [{"system": TASK_INPUT_SYSTEM, "code": code, "display": display}]}
    if text is not None:
        kind["text"] = text
    item: dict[str, Any] = {"type": kind}
    if date_time is not None:
        item["valueDateTime"] = date_time
    elif reference is not None:
        item["valueReference"] = reference
    else:
        item["valueString"] = string or ""
    return item


def build_service_request(
    service_request_id: str,
    *,
    status: str,
    identifiers: Sequence[dict[str, Any]],
    code: dict[str, Any],
    subject: dict[str, str],
    requester: dict[str, str],
    performer: dict[str, str],
    priority: str,
    authored_on: str,
    occurrence: Period,
    note: str | None,
    profile_version: str,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": service_request_id,
        "meta": profile_meta(profile_version),
        "identifier": list(identifiers),
        "status": status,
        "intent": "order",
        "priority": priority,
        "code": code,
        "subject": subject,
        "authoredOn": authored_on,
        "requester": requester,
        "performer": [performer],
    }
    period = occurrence.as_fhir()
    if period:
        resource["occurrencePeriod"] = period
    if note:
        resource["note"] = [{"text": note}]
    return validated(resource)


def build_task(
    task_id: str,
    *,
    status: str,
    business_status: dict[str, Any],
    status_reason: str | None,
    identifiers: Sequence[dict[str, Any]],
    group_identifier: dict[str, Any],
    service_request: dict[str, str],
    patient: dict[str, str],
    owner: dict[str, str],
    requester: dict[str, str],
    recipient: dict[str, str],
    priority: str,
    authored_on: str,
    last_modified: str,
    restriction: Period,
    execution: Period,
    inputs: Sequence[TaskInput],
    outputs: Sequence[TaskInput],
    profile_version: str,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Task",
        "id": task_id,
        "meta": profile_meta(profile_version),
        "identifier": list(identifiers),
        "basedOn": [service_request],
        "groupIdentifier": group_identifier,
        "status": status,
    }
    # Keys in R4B's element order, so that the dump is the input (see compiled_validation).
    if status_reason:
        resource["statusReason"] = {"text": status_reason}
    resource["businessStatus"] = business_status
    resource["intent"] = "order"
    resource["priority"] = priority
    resource["code"] = {
        "coding": [{"system": TASK_CODE_SYSTEM, "code": "fulfill", "display": "Fulfill the focal request"}]
    }
    resource["focus"] = service_request
    resource["for"] = patient
    execution_period = execution.as_fhir()
    if execution_period:
        resource["executionPeriod"] = execution_period
    resource["authoredOn"] = authored_on
    resource["lastModified"] = last_modified
    resource["requester"] = requester
    resource["owner"] = owner
    restriction_period = restriction.as_fhir()
    if restriction_period:
        resource["restriction"] = {"period": restriction_period, "recipient": [recipient]}
    else:
        resource["restriction"] = {"recipient": [recipient]}
    if inputs:
        resource["input"] = [item.as_fhir() for item in inputs]
    if outputs:
        resource["output"] = [item.as_fhir() for item in outputs]
    return validated(resource)
