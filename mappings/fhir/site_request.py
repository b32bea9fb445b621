"""The FHIR request Task of a site request (HL7 Clinical Order Workflows: a placer asks by a Task).

A site asks to cancel, hold, release or change an order by a *request Task*: ``intent: order``,
``code`` the FHIR R4 task code (``abort``, ``suspend``, ``resume``, ``change``;
:data:`mappings.site_request.TASK_CODE`), ``focus`` the order's fulfilment Task, ``for`` the patient,
``requester`` the site's Organization and ``owner`` the manufacturer's.  The fulfiller answers by
the request Task's ``status`` (:data:`REQUEST_TASK_STATUS`) and ``statusReason``.

Ids: the request Task's id is ``uuid5`` of ``Task|<order system>/<order id>/site-request|<request_id>``
(:func:`request_task_id`; scoped by manufacturer and order like every resource born from an order,
see :mod:`mappings.ids`), and it carries the request id as an identifier in the gateway's own system
:data:`SITE_REQUEST_SYSTEM`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from mappings.fhir.codes import TASK_CODE_SYSTEM
from mappings.fhir.model import profile_meta, validated
from mappings.fhir.order import TaskInput, build_task_input
from mappings.ids import GATEWAY_BASE, order_system, resource_id
from mappings.site_request import SiteRequestState

__all__ = [
    "SITE_REQUEST_SYSTEM",
    "REQUEST_TASK_STATUS",
    "TASK_CODE_DISPLAY",
    "RequestInput",
    "site_request_key_system",
    "request_task_id",
    "build_request_task",
]

#: The identifier system of site request ids (``Task.identifier`` of a request Task).
SITE_REQUEST_SYSTEM: Final = f"{GATEWAY_BASE}/sid/site-request"

#: The request Task's status by the site request's state.
REQUEST_TASK_STATUS: Final[dict[SiteRequestState, str]] = {
    "pending": "requested",
    "awaiting-manufacturer": "received",
    "applied": "completed",
    "accepted": "completed",
    "declined": "rejected",
}

#: Displays of the R4 task codes (http://hl7.org/fhir/CodeSystem/task-code) a request Task uses.
TASK_CODE_DISPLAY: Final[dict[str, str]] = {
    "abort": "Mark the focal resource as no longer active",
    "suspend": "Suspend the focal resource",
    "resume": "Re-activate the focal resource",
    "change": "Change the focal resource",
}


def site_request_key_system(manufacturer_id: str, order_id: str) -> str:
    """The id-derivation system of one order's site requests (never an identifier in a resource)."""
    return f"{order_system(manufacturer_id)}/{order_id}/site-request"


def request_task_id(manufacturer_id: str, order_id: str, request_id: str) -> str:
    """The request Task's id: the same request always gets the same Task."""
    return resource_id("Task", site_request_key_system(manufacturer_id, order_id), request_id)


@dataclass(frozen=True)
class RequestInput(TaskInput):
    """One ``Task.input`` of a request Task: a :class:`TaskInput` whose display is also the type's text."""

    def as_fhir(self) -> dict[str, Any]:
        return build_task_input(self.code, self.display, text=self.display, date_time=self.date_time,
                                reference=self.reference, string=self.string)


def build_request_task(
    task_id: str,
    *,
    request_id: str,
    task_code: str,
    status: str,
    status_reason: str | None,
    focus: dict[str, str],
    patient: dict[str, str],
    requester: dict[str, str],
    owner: dict[str, str] | None,
    authored_on: str,
    last_modified: str,
    inputs: Sequence[RequestInput],
    profile_version: str,
) -> dict[str, Any]:
    """The request Task (keys in R4B's element order, so the dump is the input)."""
    resource: dict[str, Any] = {
        "resourceType": "Task",
        "id": task_id,
        "meta": profile_meta(profile_version),
        "identifier": [{"system": SITE_REQUEST_SYSTEM, "value": request_id}],
        "status": status,
    }
    if status_reason:
        resource["statusReason"] = {"text": status_reason}
    resource["intent"] = "order"
    resource["code"] = {
        "coding": [{"system": TASK_CODE_SYSTEM, "code": task_code, "display": TASK_CODE_DISPLAY[task_code]}]
    }
    resource["focus"] = focus
    resource["for"] = patient
    resource["authoredOn"] = authored_on
    resource["lastModified"] = last_modified
    resource["requester"] = requester
    if owner is not None:
        resource["owner"] = owner
    if inputs:
        resource["input"] = [item.as_fhir() for item in inputs]
    return validated(resource)
