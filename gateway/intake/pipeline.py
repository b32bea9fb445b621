"""What happens to an accepted event inside its transaction: translate, persist, enqueue.

Called by ``gateway.intake.accept`` right after the event row and the order state are written, in the
same database transaction, so an event, its FHIR resource versions and its outbox rows commit
together or not at all.  Translation is pure; this module is the only place its outputs meet I/O.

Outbox rows are written for each endpoint configured in the site profile's ``delivery`` section:
one row per HL7v2 message for ``<site>/mllp``, one transaction Bundle per event for ``<site>/fhir``.
A site without endpoints gets no rows; its EHR polls ``/fhir`` instead.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import orjson
from sqlmodel import Session

from gateway.context import Context
from gateway.delivery.destinations import fhir_destination, mllp_destination
from gateway.delivery.outbox import NewMessage, enqueue
from gateway.profile_limits import template_limits
from gateway.store.fhir import save_translation
from mappings.events import EventRecord
from mappings.fhir.bundle import transaction_bundle
from mappings.ids import event_system, resource_id
from mappings.profile.schema import SiteProfile
from mappings.result import Translation
from mappings.retraction import Retraction, translate_retraction
from mappings.snapshot import OrderSnapshot
from mappings.translate import translate

__all__ = ["process_event", "process_retraction", "outbox_messages"]

log = logging.getLogger("cgt_gateway.pipeline")


def outbox_messages(translation: Translation, profile: SiteProfile, snapshot: OrderSnapshot,
                    record: EventRecord) -> list[NewMessage]:
    """The rows one event puts in the site's queues (pure: decided by the profile alone)."""
    messages: list[NewMessage] = []
    mllp = profile.delivery.mllp
    if mllp is not None and mllp.enabled:
        messages.extend(
            NewMessage(destination=mllp_destination(profile.site_id), channel="mllp", control_id=m.control_id,
                       message_type=m.message_type, content_type="application/hl7-v2", payload=m.er7,
                       refused=m.refused)
            for m in translation.messages)
    push = profile.delivery.fhir_push
    if push is not None and push.enabled and translation.resources:
        bundle = transaction_bundle(translation.resources)
        bundle_id = resource_id("Bundle", event_system(snapshot.manufacturer.id, snapshot.order.order_id),
                                record.event_id)
        bundle = {**bundle, "id": bundle_id}
        messages.append(NewMessage(destination=fhir_destination(profile.site_id), channel="fhir",
                                   control_id=bundle_id, message_type="transaction",
                                   content_type="application/fhir+json",
                                   payload=orjson.dumps(bundle).decode()))
    return messages


def process_event(session: Session, snapshot: OrderSnapshot, record: EventRecord, context: Context,
                  now: datetime) -> Translation | None:
    """Translate ``record`` for the order's site, store the resource versions, enqueue deliveries."""
    profile = context.profiles.get(snapshot.site.id)
    if profile is None:  # configuration is validated at start-up; a site without a profile cannot occur
        raise LookupError(f"no mapping profile loaded for site {snapshot.site.id!r}")
    translation = translate(snapshot, record, profile, context.terminology, now,
                            template_limits=template_limits(context.settings))
    ids = {"site_id": snapshot.site.id, "manufacturer_id": snapshot.manufacturer.id,
           "order_id": snapshot.order.order_id}
    save_translation(session, resources=translation.resources, now=now, **ids)
    rows = outbox_messages(translation, profile, snapshot, record)
    if rows:
        enqueue(session, rows, event_id=record.event_id, now=now, **ids)
    for issue in translation.issues:  # codes and paths only: never values (PHI)
        log.warning("mapping issue", extra={**_ids(ids, record), "severity": issue.severity,
                                            "issue_code": issue.code, "path": issue.path})
    return translation


def process_retraction(session: Session, before: OrderSnapshot, after: OrderSnapshot, retracted: EventRecord,
                       retraction: Retraction, context: Context, now: datetime) -> Translation:
    """Translate the retraction of ``retracted`` (``before``/``after``: the order with and without it),
    store the resource versions and enqueue the site's corrections, in the caller's transaction."""
    profile = context.profiles.get(after.site.id)
    if profile is None:
        raise LookupError(f"no mapping profile loaded for site {after.site.id!r}")
    translation = translate_retraction(before, after, retracted, retraction, profile, context.terminology,
                                       now, template_limits=template_limits(context.settings))
    ids = {"site_id": after.site.id, "manufacturer_id": after.manufacturer.id,
           "order_id": after.order.order_id}
    save_translation(session, resources=translation.resources, now=now, **ids)
    # The FHIR push Bundle of a retraction gets its own id ('#' cannot occur in an event id).
    marker = retracted.model_copy(update={"event_id": f"{retracted.event_id}#retraction"})
    rows = outbox_messages(translation, profile, after, marker)
    if rows:
        enqueue(session, rows, event_id=retracted.event_id, now=now, **ids)
    for issue in translation.issues:
        log.warning("mapping issue", extra={**_ids(ids, retracted), "severity": issue.severity,
                                            "issue_code": issue.code, "path": issue.path})
    return translation


def _ids(ids: dict[str, str], record: EventRecord) -> dict[str, Any]:
    return {**ids, "event_id": record.event_id, "event_type": record.type.value}
