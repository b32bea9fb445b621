"""What a site request sends out, in the caller's transaction: the site's answer and the manufacturer's
webhook.

* **The site's answer** (whenever a request is created or changes state): the pure
  ``translate_site_request`` gives the FHIR request Task's new version (and, for ``order_number``, the
  ServiceRequest's) and the HL7v2 answer (ORC-1 ``CR``/``UC``/``HR``/``UH``/``OR``/``UR``/``XR``/``UX``);
  the resources are stored as versions (the site polls them), the messages queued to ``<site>/mllp``
  when the site's profile enables MLLP delivery.
* **The manufacturer's webhook** ``site_request.received`` (when the manufacturer has a webhook), on
  the manufacturer's FIFO webhook queue, signed by the sender: ids, kind, state and requested values,
  no patient data.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime
from typing import Any

from sqlmodel import Session

from gateway.context import Context
from gateway.delivery.destinations import mllp_destination, webhook_destination
from gateway.delivery.outbox import NewMessage, enqueue
from gateway.inbound import records
from gateway.profile_limits import template_limits
from gateway.store.fhir import save_translation
from mappings.result import Translation
from mappings.site_request import SiteRequestView
from mappings.snapshot import OrderSnapshot
from mappings.translate_site_request import translate_site_request

__all__ = ["queue_site_answer", "queue_webhook", "webhook_body", "WEBHOOK_TYPE"]

log = logging.getLogger("cgt_gateway.inbound")
WEBHOOK_TYPE = "site_request.received"
_WEBHOOK_NAMESPACE = uuid.UUID("0b7d1f3e-52a4-5e0c-8d61-2f9a4c7e1b35")


def _event_id(request_id: str) -> str:
    """The outbox rows' ``event_id``: the request's lifecycle event id (also when none was recorded)."""
    return f"site-request-{request_id}"


def queue_site_answer(session: Session, context: Context, snapshot: OrderSnapshot, request: SiteRequestView,
                      now: datetime) -> Translation | None:
    """Translate ``request`` in its current state for its site; store the resources, queue the messages."""
    profile = context.profiles.get(request.site_id)
    if profile is None:
        raise LookupError(f"no mapping profile loaded for site {request.site_id!r}")
    translation: Translation = translate_site_request(snapshot, request, profile, context.terminology, now,
                                                      template_limits=template_limits(context.settings))
    ids = {"site_id": request.site_id, "manufacturer_id": request.manufacturer_id,
           "order_id": request.order_id}
    save_translation(session, resources=translation.resources, now=now, **ids)
    mllp = profile.delivery.mllp
    if mllp is not None and mllp.enabled and translation.messages:
        rows = [NewMessage(destination=mllp_destination(profile.site_id), channel="mllp",
                           control_id=m.control_id, message_type=m.message_type,
                           content_type="application/hl7-v2", payload=m.er7, refused=m.refused)
                for m in translation.messages]
        enqueue(session, rows, event_id=_event_id(request.request_id), now=now, **ids)
    for issue in translation.issues:  # codes and paths only: never values (PHI)
        log.warning("mapping issue", extra={**ids, "request_id": request.request_id,
                                            "severity": issue.severity, "issue_code": issue.code,
                                            "path": issue.path})
    return translation


def webhook_body(row: Any, now: datetime) -> dict[str, Any]:
    view = records.api_view(row)
    delivery_id = str(uuid.uuid5(_WEBHOOK_NAMESPACE, f"{WEBHOOK_TYPE}|{row.request_id}"))
    request = {key: view[key] for key in ("request_id", "order_id", "site_id", "kind", "state", "requested",
                                          "reason", "received_at", "decided_at")}
    return {"type": WEBHOOK_TYPE, "delivery_id": delivery_id, "at": now.isoformat(), "request": request}


def queue_webhook(session: Session, context: Context, row: Any, now: datetime) -> None:
    """Queue ``site_request.received`` for the request's manufacturer, if it has a webhook."""
    manufacturer = context.settings.manufacturer(row.manufacturer_id)
    if manufacturer is None or manufacturer.webhook is None:
        return
    body = webhook_body(row, now)
    note = NewMessage(destination=webhook_destination(row.manufacturer_id), channel="webhook",
                      control_id=body["delivery_id"], message_type=WEBHOOK_TYPE,
                      content_type="application/json",
                      payload=json.dumps(body, separators=(",", ":"), sort_keys=True))
    enqueue(session, [note], site_id=row.site_id, manufacturer_id=row.manufacturer_id, order_id=row.order_id,
            event_id=_event_id(row.request_id), now=now)
