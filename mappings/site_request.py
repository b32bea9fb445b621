"""Site requests: the vocabulary shared by the service and the pure builders (no I/O, no clock).

A *site request* is one change a treatment site asks for (by HL7v2 over MLLP, or by FHIR): cancel the
order, put it on hold, release the hold, reschedule an appointment, change a requested date, tell us
its own order number, or report the infusion done.  It is stored once, append-only in what was asked,
and moves through :data:`SiteRequestState`::

    pending -> applied                                  (inside the product's policy window)
    pending -> awaiting-manufacturer -> accepted | declined   (the manufacturer decides)
    pending -> declined                                 (the lifecycle can never take it)

``accepted`` means the manufacturer accepted and the change was applied to the order.
The answer to the site uses HL7 table 0119 order control codes (:data:`ANSWER_CONTROL`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = [
    "SiteRequestKind",
    "SiteRequestState",
    "SiteRequestChannel",
    "SITE_REQUEST_KINDS",
    "SITE_REQUEST_STATES",
    "FINAL_STATES",
    "ANSWER_CONTROL",
    "TASK_CODE",
    "SiteRequestView",
    "answer_control",
]

SiteRequestKind = Literal["cancel", "hold", "release_hold", "reschedule", "change", "order_number", "infused"]
SiteRequestState = Literal["pending", "applied", "awaiting-manufacturer", "accepted", "declined"]
SiteRequestChannel = Literal["hl7v2", "fhir"]

SITE_REQUEST_KINDS: tuple[SiteRequestKind, ...] = (
    "cancel", "hold", "release_hold", "reschedule", "change", "order_number", "infused")
SITE_REQUEST_STATES: tuple[SiteRequestState, ...] = (
    "pending", "applied", "awaiting-manufacturer", "accepted", "declined")
FINAL_STATES: frozenset[SiteRequestState] = frozenset({"applied", "accepted", "declined"})

#: HL7 table 0119: the filler's answer to a placer request, by kind, (granted, refused).
#: ``hold``/``release_hold`` refused use the table's UH (unable to put on hold) and UR (unable to release).
ANSWER_CONTROL: dict[SiteRequestKind, tuple[str, str]] = {
    "cancel": ("CR", "UC"),
    "hold": ("HR", "UH"),
    "release_hold": ("OR", "UR"),
    "reschedule": ("XR", "UX"),
    "change": ("XR", "UX"),
}

#: FHIR R4 task codes (http://hl7.org/fhir/CodeSystem/task-code) of a request Task, by kind.
TASK_CODE: dict[SiteRequestKind, str] = {
    "cancel": "abort",
    "hold": "suspend",
    "release_hold": "resume",
    "reschedule": "change",
    "change": "change",
}


@dataclass(frozen=True)
class SiteRequestView:
    """One site request as the builders and the API see it.

    ``requested`` holds the asked-for values as JSON (ISO-8601 strings for times): ``appointment``
    (``apheresis``/``infusion``), ``start``, ``end``, ``appointment_action``, ``placer_appointment_id``,
    ``filler_appointment_id``, ``site_order_number``, ``administered_at``; only those the kind uses.
    ``reason`` is the site's; ``decision_reason`` the manufacturer's (or the gateway's, for an automatic
    decision).  ``task_id`` is the FHIR request Task's id (every request with a Task code has one).
    """

    request_id: str
    order_id: str
    site_id: str
    manufacturer_id: str
    kind: SiteRequestKind
    state: SiteRequestState
    channel: SiteRequestChannel
    received_at: datetime
    requested: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    decision_reason: str | None = None
    decided_at: datetime | None = None
    task_id: str | None = None
    control_id: str | None = None  # HL7v2: the site's MSH-10

    @property
    def granted(self) -> bool | None:
        """True once applied or accepted, False once declined, None while undecided."""
        if self.state in ("applied", "accepted"):
            return True
        if self.state == "declined":
            return False
        return None


def answer_control(kind: SiteRequestKind, granted: bool) -> str | None:
    """The ORC-1 of the answer to a request of ``kind`` (None: the kind gets no order-control answer)."""
    pair = ANSWER_CONTROL.get(kind)
    if pair is None:
        return None
    return pair[0] if granted else pair[1]
