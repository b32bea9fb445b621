"""What the order timeline page shows: events, the FHIR versions each produced, and every outbound
message with its delivery attempts.

Read in one session with capped queries (:data:`MAX_EVENTS`, :data:`MAX_VERSIONS`,
:data:`MAX_MESSAGES`, :data:`MAX_ATTEMPTS`; the page says when a cap cut something).  FHIR versions
carry no event id: a version belongs to the latest event accepted (or retraction recorded) at or
before its ``lastUpdated`` (one transaction writes an event and its versions, so the stamps agree).
Site requests (inbound, issue 13) are listed with their state, decision and the event each produced
(:data:`MAX_SITE_REQUESTS`); the raw message a site sent is never shown here (it holds PHI).
"""

from __future__ import annotations

import difflib
import json
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session, col, select

from gateway.auth import Principal
from gateway.console.hl7_view import Hl7Segment, segments_of
from gateway.console.scope import may_read_payload, may_see_message, order_filters
from gateway.delivery.outbox import DeliveryAttempt, OutboxMessage
from gateway.store.fhir_tables import FhirResourceVersion
from gateway.store.search_params import to_us
from gateway.store.site_request_tables import SiteRequestRow
from gateway.store.tables import EventRow, OrderRow, as_utc

__all__ = ["MAX_EVENTS", "MAX_VERSIONS", "MAX_MESSAGES", "MAX_ATTEMPTS", "MAX_SITE_REQUESTS",
           "SiteRequestEntry", "Timeline", "EventEntry",
           "MessageEntry", "VersionEntry", "find_orders", "load_timeline"]

MAX_EVENTS = 500
MAX_VERSIONS = 500
MAX_MESSAGES = 500
MAX_ATTEMPTS = 2000
MAX_DIFF_LINES = 400
MAX_SITE_REQUESTS = 200


@dataclass
class VersionEntry:
    resource_type: str
    resource_id: str
    version_id: int
    last_updated_us: int
    json_text: str
    diff: list[str] | None = None  # against the previous version of the same resource
    moment_us: int = -1  # the acceptance (or retraction) it is attributed to; -1: before the first event


@dataclass
class MessageEntry:
    message: OutboxMessage
    attempts: list[DeliveryAttempt]
    payload_visible: bool
    segments: list[Hl7Segment] | None = None  # HL7v2
    json_text: str | None = None  # FHIR / webhook bodies, pretty-printed


@dataclass
class EventEntry:
    event: EventRow
    versions: list[VersionEntry] = field(default_factory=list)
    messages: list[MessageEntry] = field(default_factory=list)


@dataclass
class SiteRequestEntry:
    """One site request as the timeline shows it (never its raw message)."""

    request_id: str
    kind: str
    state: str
    channel: str
    control_id: str | None
    received_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    reason: str | None
    decision_reason: str | None
    requested: dict[str, object]
    event_id: str | None  # the lifecycle event it produced (applied or accepted)


@dataclass
class Timeline:
    order: OrderRow
    events: list[EventEntry]
    unattributed_versions: list[VersionEntry]  # written before the first event (cannot occur; shown if so)
    other_messages: list[MessageEntry]  # messages naming no event of this timeline
    site_requests: list[SiteRequestEntry]  # issue 13: inbound site requests, oldest first
    truncated: list[str]


def find_orders(session: Session, principal: Principal, order_id: str,
                manufacturer_id: str | None = None) -> list[OrderRow]:
    """The orders with ``order_id`` that ``principal`` may see (two at most: more means ambiguous)."""
    query = select(OrderRow).where(col(OrderRow.order_id) == order_id, *order_filters(principal))
    if manufacturer_id is not None:
        query = query.where(col(OrderRow.manufacturer_id) == manufacturer_id)
    return list(session.exec(query.order_by(col(OrderRow.manufacturer_id)).limit(10)).all())


def _pretty(raw: bytes | str) -> str:
    try:
        return json.dumps(json.loads(raw), indent=2, ensure_ascii=False, sort_keys=False)
    except (ValueError, TypeError):
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def _diff(before: str, after: str, label: str) -> list[str]:
    lines = list(difflib.unified_diff(before.splitlines(), after.splitlines(), f"{label} (before)",
                                      f"{label} (after)", lineterm="", n=2))
    return lines[:MAX_DIFF_LINES] + (["... (diff cut)"] if len(lines) > MAX_DIFF_LINES else [])


def _message_entry(principal: Principal, message: OutboxMessage,
                   attempts: list[DeliveryAttempt]) -> MessageEntry:
    entry = MessageEntry(message, attempts, may_read_payload(principal, message))
    if entry.payload_visible:
        if message.channel == "mllp":
            entry.segments = segments_of(message.payload)
        else:
            entry.json_text = _pretty(message.payload)
    return entry


def load_timeline(session: Session, principal: Principal, order: OrderRow) -> Timeline:
    truncated: list[str] = []
    events = list(session.exec(select(EventRow).where(col(EventRow.order_pk) == order.id)
                               .order_by(col(EventRow.sequence)).limit(MAX_EVENTS + 1)).all())
    if len(events) > MAX_EVENTS:
        events = events[:MAX_EVENTS]
        truncated.append(f"only the first {MAX_EVENTS} events")
    entries = [EventEntry(e) for e in events]
    by_event_id = {e.event.event_id: e for e in entries}

    # FHIR versions, oldest first, each attributed to the latest event (or retraction) before it
    versions = list(session.exec(
        select(FhirResourceVersion).where(col(FhirResourceVersion.manufacturer_id) == order.manufacturer_id,
                                          col(FhirResourceVersion.order_id) == order.order_id)
        .order_by(col(FhirResourceVersion.last_updated_us), col(FhirResourceVersion.resource_type),
                  col(FhirResourceVersion.resource_id)).limit(MAX_VERSIONS + 1)).all())
    if len(versions) > MAX_VERSIONS:
        versions = versions[:MAX_VERSIONS]
        truncated.append(f"only the first {MAX_VERSIONS} FHIR versions")
    moments: list[tuple[int, EventEntry]] = []
    for entry in entries:
        moments.append((to_us(as_utc(entry.event.accepted_at)), entry))
        if entry.event.retracted_at is not None:
            moments.append((to_us(as_utc(entry.event.retracted_at)), entry))
    moments.sort(key=lambda m: m[0])
    stamps = [m[0] for m in moments]
    previous: dict[tuple[str, str], str] = {}
    unattributed: list[VersionEntry] = []
    for version in versions:
        text = _pretty(version.body)
        key = (version.resource_type, version.resource_id)
        item = VersionEntry(version.resource_type, version.resource_id, version.version_id,
                            version.last_updated_us, text)
        if key in previous:
            item.diff = _diff(previous[key], text, f"{key[0]}/{key[1]}")
        previous[key] = text
        at = bisect_right(stamps, version.last_updated_us) - 1
        if at >= 0:
            item.moment_us = moments[at][0]
        (moments[at][1].versions if at >= 0 else unattributed).append(item)

    # outbound messages and their attempts
    messages = [m for m in session.exec(
        select(OutboxMessage).where(col(OutboxMessage.manufacturer_id) == order.manufacturer_id,
                                    col(OutboxMessage.order_id) == order.order_id)
        .order_by(col(OutboxMessage.id)).limit(MAX_MESSAGES + 1)).all()]
    if len(messages) > MAX_MESSAGES:
        messages = messages[:MAX_MESSAGES]
        truncated.append(f"only the first {MAX_MESSAGES} messages")
    messages = [m for m in messages if may_see_message(principal, m)]
    attempts: dict[int, list[DeliveryAttempt]] = {}
    ids = [m.id for m in messages if m.id is not None]
    if ids:
        rows = session.exec(select(DeliveryAttempt).where(col(DeliveryAttempt.message_id).in_(ids))
                            .order_by(col(DeliveryAttempt.id)).limit(MAX_ATTEMPTS + 1)).all()
        if len(rows) > MAX_ATTEMPTS:
            rows = rows[:MAX_ATTEMPTS]
            truncated.append(f"only the first {MAX_ATTEMPTS} attempts")
        for attempt in rows:
            attempts.setdefault(attempt.message_id, []).append(attempt)
    others: list[MessageEntry] = []
    for message in messages:
        shown = _message_entry(principal, message, attempts.get(message.id or 0, []))
        owner = by_event_id.get(message.event_id)
        (owner.messages if owner is not None else others).append(shown)
    return Timeline(order, entries, unattributed, others, _site_requests(session, order, entries, truncated),
                    truncated)


def _site_requests(session: Session, order: OrderRow, entries: list[EventEntry],
                   truncated: list[str]) -> list[SiteRequestEntry]:
    rows = list(session.exec(select(SiteRequestRow).where(col(SiteRequestRow.order_pk) == order.id)
                             .order_by(col(SiteRequestRow.seq)).limit(MAX_SITE_REQUESTS + 1)).all())
    if len(rows) > MAX_SITE_REQUESTS:
        rows = rows[:MAX_SITE_REQUESTS]
        truncated.append(f"only the first {MAX_SITE_REQUESTS} site requests")
    event_ids = {entry.event.id: entry.event.event_id for entry in entries}
    return [SiteRequestEntry(row.request_id, row.kind, row.state, row.channel, row.control_id,
                             row.received_at, row.decided_at, row.decided_by, row.reason, row.decision_reason,
                             dict(row.requested or {}),
                             event_ids.get(row.event_pk) if row.event_pk is not None else None)
            for row in rows]


def when(value: datetime | None) -> str:
    return "" if value is None else as_utc(value).strftime("%Y-%m-%d %H:%M:%S UTC")
