"""The site-request service: one entry for both channels (HL7v2, FHIR), one for the manufacturer.

INTERFACE STUB written by the lead before the parts were split; the ``core`` part implements it (and
may extend it), the ``wire`` part (MLLP listener, FHIR routes) calls it.  Keep the names and meanings.

``receive(context, incoming, ack=...)``: in one transaction, find the order (by the id the gateway
sent, within the site), check the CoI, store one site request, decide it by the product's policy
(apply it as a lifecycle event with ``source: site``, send it to the manufacturer, or decline it at
once), queue the answers (site: HL7v2 order control / FHIR request Task; manufacturer: webhook
``site_request.received``), and store the HL7v2 ACK built by ``ack`` from the outcome, then commit.
A duplicate (same ``dedupe_key``) returns the first outcome and its stored ACK and changes nothing.

``decide_request(context, manufacturer_id, request_id, decision, reason)``: the manufacturer's
decision (idempotent; 404 for another manufacturer's request).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.context import Context
from mappings.site_request import SiteRequestChannel, SiteRequestKind, SiteRequestView

__all__ = ["IncomingRequest", "Refusal", "Outcome", "receive", "decide_request"]


@dataclass(frozen=True)
class IncomingRequest:
    """A site request as a channel read it (the channel has already checked syntax and the site).

    ``order_ref``: the order id as the gateway sent it (ORC-2.1 / SCH-26.1 / Task.focus / basedOn).
    ``coi``: the CoI the message carries, or None; ``coi_required``: the site's profile puts the CoI in
    this message type, so None (or a mismatch) is refused ``coi-missing`` / ``coi-mismatch`` and written
    to the safety log.  ``requested``: see :class:`mappings.site_request.SiteRequestView`.
    ``dedupe_key``: HL7v2 ``MSH-3|MSH-4|MSH-10`` (the service hashes it); None for FHIR.
    ``raw``: the message or resource as received (kept with the request; never logged).
    ``sender``: who sent it (API client name, or ``mllp:<peer address>``).
    """

    site_id: str
    kind: SiteRequestKind
    channel: SiteRequestChannel
    order_ref: str
    requested: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    coi: str | None = None
    coi_required: bool = False
    dedupe_key: str | None = None
    control_id: str | None = None
    raw: str = ""
    sender: str = ""


@dataclass(frozen=True)
class Refusal:
    """Why nothing was stored: ``code`` is ``unknown-order`` | ``coi-mismatch`` | ``coi-missing`` (and
    ``hl7_error`` the HL7 table 0357 code the ACK's ERR-3 carries: 204 for an unknown order, 207
    otherwise); ``pointer`` names the field for problem+json / OperationOutcome."""

    code: str
    detail: str
    hl7_error: str
    pointer: str


@dataclass(frozen=True)
class Outcome:
    """What ``receive`` did.  ``request`` is None exactly when ``refusal`` is set.

    ``created``: False for a duplicate.  ``declined_at_once``: the lifecycle can never take it (the
    HL7v2 answer is AE with the reason).  ``ack``: the ACK stored with the request (for a duplicate,
    the first one's), None when no ``ack`` builder was given.
    """

    request: SiteRequestView | None
    refusal: Refusal | None = None
    created: bool = True
    declined_at_once: bool = False
    ack: str | None = None


AckBuilder = Callable[[Outcome], str]


def receive(context: Context, incoming: IncomingRequest, *, ack: AckBuilder | None = None) -> Outcome:
    raise NotImplementedError("issue 13 core part")


def decide_request(context: Context, manufacturer_id: str, request_id: str,
                   decision: Literal["accept", "decline"], reason: str | None) -> SiteRequestView:
    raise NotImplementedError("issue 13 core part")
