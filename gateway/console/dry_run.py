"""A site profile's dry run: a draft profile and a past order, replayed now against what was sent.

The draft is validated exactly as at start-up and as by ``POST /v1/sites/{site_id}/preview``
(:func:`mappings.profile.loader.load_profile_text` with the configured bounds; problems come back
as ``file:line: field: reason``); the order and its events (retracted ones left out) are replayed
with :func:`gateway.intake.replay.preview_order`, the preview API's function.  Nothing is stored.
Each event's HL7v2 messages are compared with the ones queued for the site's MLLP endpoint at the
time (MSH-7, the time the message was made, left out), and each FHIR resource with its newest
version stored once that event was accepted (``meta`` left out of both).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from gateway.auth import Principal
from gateway.console.timeline import EventEntry, Timeline, load_timeline
from gateway.context import Context
from gateway.errors import GatewayError
from gateway.intake.replay import preview_order
from gateway.profile_limits import profile_limits
from gateway.store.db import read_session
from gateway.store.search_params import to_us
from gateway.store.tables import EventRow, OrderRow, as_utc
from mappings.events import EventIn
from mappings.orders import OrderIn
from mappings.profile.loader import ProfileInvalid, load_profile_text

__all__ = ["ORDER_CHOICES", "Comparison", "StepResult", "DryRunOutcome", "site_orders", "run"]

ORDER_CHOICES = 50
MAX_DIFF_LINES = 400


@dataclass
class Comparison:
    label: str  # "HL7v2 OML^O21 #1", "Task/abc"
    changed: bool
    diff: list[str]
    now_text: str
    sent_text: str | None  # None: nothing was sent for it


@dataclass
class StepResult:
    event_id: str
    event_type: str
    accepted: bool
    refusal: str | None
    issues: list[str]
    comparisons: list[Comparison] = field(default_factory=list)


@dataclass
class DryRunOutcome:
    status: int
    orders: list[OrderRow]
    result: list[StepResult] | None = None
    problems: list[str] = field(default_factory=list)
    message: str | None = None


def site_orders(engine: Engine, site_id: str) -> list[OrderRow]:
    with read_session(engine) as session:
        query = (select(OrderRow).where(col(OrderRow.site_id) == site_id)
                 .order_by(col(OrderRow.updated_at).desc(), col(OrderRow.id).desc()).limit(ORDER_CHOICES))
        return list(session.exec(query).all())


def _diff(sent: str, now: str, label: str) -> list[str]:
    lines = list(difflib.unified_diff(sent.splitlines(), now.splitlines(), f"{label} (sent)",
                                      f"{label} (now)",
                                      lineterm="", n=2))
    return lines[:MAX_DIFF_LINES] + (["... (diff cut)"] if len(lines) > MAX_DIFF_LINES else [])


def _compare(label: str, now_text: str, sent_text: str | None) -> Comparison:
    if sent_text is None:
        return Comparison(label, True, [], now_text, None)
    diff = _diff(sent_text, now_text, label)
    return Comparison(label, bool(diff), diff, now_text, sent_text)


MESSAGE_TIME = "(message time)"


def _er7_lines(er7: str) -> str:
    """One segment a line, MSH-7 (when the message was made: now, against then) replaced by a marker."""
    lines = []
    for line in er7.replace("\r", "\n").strip().split("\n"):
        if line.startswith("MSH") and len(line) > 3:
            fields = line.split(line[3])
            if len(fields) > 6:
                fields[6] = MESSAGE_TIME
            line = line[3].join(fields)
        lines.append(line)
    return "\n".join(lines)


def _without_meta(text: str) -> str:
    try:
        resource = json.loads(text)
    except ValueError:
        return text
    if isinstance(resource, dict):
        resource.pop("meta", None)
    return json.dumps(resource, indent=2, ensure_ascii=False)


def _stored_as_of(timeline: Timeline, entry: EventEntry | None) -> dict[tuple[str, str], str]:
    """Each resource's newest stored version once ``entry``'s event was accepted (what the site could
    read then: a resource the event did not change keeps its earlier version)."""
    if entry is None:
        return {}
    cutoff = to_us(as_utc(entry.event.accepted_at))
    versions = [v for e in timeline.events for v in e.versions if v.moment_us <= cutoff]
    versions += timeline.unattributed_versions
    return {(v.resource_type, v.resource_id): v.json_text
            for v in sorted(versions, key=lambda v: (v.last_updated_us, v.version_id))}


def run(context: Context, site_id: str, profile_yaml: str, order_pk: int | None) -> DryRunOutcome:
    orders = site_orders(context.engine, site_id)
    outcome = DryRunOutcome(400, orders)
    if not profile_yaml.strip():
        outcome.message = "Paste a draft profile."
        return outcome
    if order_pk is None:
        outcome.message = "Pick one of the site's orders."
        return outcome
    try:
        profile = load_profile_text(profile_yaml, f"{site_id}.yaml", profile_limits(context.settings))
    except ProfileInvalid as exc:
        outcome.status, outcome.message = 422, "The draft profile is not valid."
        outcome.problems = exc.listed + ([f"... and {exc.count - len(exc.listed)} more problems not listed"]
                                         if exc.count > len(exc.listed) else [])
        return outcome
    if profile.site_id != site_id:
        outcome.status, outcome.message = 422, "The draft profile is for another site."
        outcome.problems = [f"{site_id}.yaml: site_id: is {profile.site_id!r}, must be {site_id!r}"]
        return outcome
    site_principal = Principal("site", site_id, "console dry run")
    with read_session(context.engine) as session:
        order = session.get(OrderRow, order_pk)
        if order is None or order.site_id != site_id:
            outcome.message = "Pick one of the site's orders."
            return outcome
        events = list(session.exec(select(EventRow).where(col(EventRow.order_pk) == order.id,
                                                          col(EventRow.sequence) > 0)
                                   .order_by(col(EventRow.sequence)).limit(200)).all())
        timeline = load_timeline(session, site_principal, order)
    try:
        order_in = OrderIn.model_validate(order.body)
        events_in = [EventIn(event_id=e.event_id, type=e.type, occurred_at=as_utc(e.occurred_at), coi=e.coi,
                             data=e.data)
                     for e in events if e.retracted_at is None]
        steps = preview_order(context.settings, profile, order_in, events_in, context.terminology,
                              now=context.now(), placed_at=as_utc(order.created_at))
    except (ValidationError, GatewayError) as exc:  # a stored order the current rules refuse
        outcome.status, outcome.message = 422, f"The stored order cannot be replayed: {exc}"
        return outcome
    by_event = {entry.event.event_id: entry for entry in timeline.events}
    results: list[StepResult] = []
    for step in steps:
        entry = by_event.get(step.event_id)
        refusal = f"{step.refusal.code}: {step.refusal.detail}" if step.refusal else None
        result = StepResult(step.event_id, step.event_type.value, step.accepted, refusal,
                            [f"{i.severity} {i.code} {i.path}: {i.message}" for i in step.issues])
        # retracted events are not replayed, so an event's messages here are the ones it first produced
        sent_hl7 = [m.message.payload for m in (entry.messages if entry else [])
                    if m.message.channel == "mllp"]
        for i, message in enumerate(step.messages):
            sent = _er7_lines(sent_hl7[i]) if i < len(sent_hl7) else None
            result.comparisons.append(_compare(f"HL7v2 {message.message_type} #{i + 1}",
                                               _er7_lines(message.er7), sent))
        stored = _stored_as_of(timeline, entry)
        for item in (step.bundle or {}).get("entry", []):
            resource: dict[str, Any] = item.get("resource", {})
            key = (str(resource.get("resourceType")), str(resource.get("id")))
            now_text = _without_meta(json.dumps(resource))
            sent_text = _without_meta(stored[key]) if key in stored else None
            result.comparisons.append(_compare(f"{key[0]}/{key[1]}", now_text, sent_text))
        results.append(result)
    outcome.status, outcome.result = 200, results
    return outcome
