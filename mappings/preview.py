"""Preview: what a site would receive for an order and its events, without touching any database.

The lifecycle lives in ``gateway`` (the pure core may not import it), so the events are first judged
by a *replay* (``gateway.intake.replay.replay_journey``) into :class:`JourneyStep` s; :func:`preview_steps`
then translates each accepted step for the profile, and adds what only preview checks (an override
that renders a required field empty, :mod:`mappings.preview_overrides`).  :meth:`PreviewStep.to_json`
is JSON-ready for
the API (``POST /v1/sites/{site_id}/preview``) and the CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mappings.domain import EventType
from mappings.events import EventIn, EventRecord
from mappings.fhir.bundle import transaction_bundle
from mappings.orders import OrderIn
from mappings.preview_overrides import empty_required_overrides
from mappings.profile.schema import SiteProfile
from mappings.profile.templates import TemplateLimits
from mappings.result import Hl7Message, MappingIssue
from mappings.snapshot import OrderSnapshot
from mappings.translate import translate
from terminology import Terminology

__all__ = [
    "Refusal",
    "JourneyStep",
    "PreviewStep",
    "Replay",
    "preview",
    "preview_steps",
    "issue_json",
    "message_json",
]


@dataclass(frozen=True)
class Refusal:
    """Why the gateway would refuse an event (the same stable code the API would answer)."""

    code: str
    detail: str
    errors: tuple[tuple[str, str], ...] = ()  # (JSON pointer, reason)


@dataclass(frozen=True)
class JourneyStep:
    """One event after the lifecycle judged it: accepted (snapshot + record) or refused."""

    event_id: str
    event_type: EventType
    snapshot: OrderSnapshot | None = None
    record: EventRecord | None = None
    refusal: Refusal | None = None


Replay = Callable[[OrderIn, Sequence[EventIn]], Sequence[JourneyStep]]


@dataclass(frozen=True)
class PreviewStep:
    event_id: str
    event_type: EventType
    accepted: bool
    late: bool = False
    status: str | None = None
    bundle: dict[str, Any] | None = None
    messages: tuple[Hl7Message, ...] = ()
    issues: tuple[MappingIssue, ...] = ()
    refusal: Refusal | None = None
    profile_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_type": self.event_type.value,
            "accepted": self.accepted,
            "late": self.late,
            "status": self.status,
            "profile_version": self.profile_version,
            "refusal": None
            if self.refusal is None
            else {
                "code": self.refusal.code,
                "detail": self.refusal.detail,
                "errors": [{"pointer": p, "reason": r} for p, r in self.refusal.errors],
            },
            "issues": [issue_json(i) for i in self.issues],
            "bundle": self.bundle,
            "hl7v2": [message_json(m) for m in self.messages],
        }


def issue_json(issue: MappingIssue) -> dict[str, str]:
    return {"severity": issue.severity, "code": issue.code, "path": issue.path, "message": issue.message}


def message_json(message: Hl7Message) -> dict[str, Any]:
    return {
        "message_type": message.message_type,
        "control_id": message.control_id,
        "version": message.version,
        "segments": [s for s in message.er7.split("\r") if s],
        "refused": message.refused,  # why the site would not be sent this message (None: it would be)
    }


def preview_steps(
    profile: SiteProfile, steps: Sequence[JourneyStep], terminology: Terminology, now: datetime,
    *, template_limits: TemplateLimits | None = None,
) -> list[PreviewStep]:
    """Translate every accepted step for ``profile``; refused steps carry their refusal.

    ``template_limits`` bound the override templates exactly as for live delivery.
    """
    previews = []
    for step in steps:
        if step.snapshot is None or step.record is None:
            previews.append(
                PreviewStep(
                    step.event_id,
                    step.event_type,
                    accepted=False,
                    refusal=step.refusal,
                    profile_version=profile.version,
                )
            )
            continue
        translation = translate(step.snapshot, step.record, profile, terminology, now,
                                template_limits=template_limits)
        previews.append(
            PreviewStep(
                step.event_id,
                step.event_type,
                accepted=True,
                late=step.record.late,
                status=step.record.status_after.value,
                bundle=transaction_bundle(translation.resources),
                messages=translation.messages,
                issues=translation.issues
                + tuple(empty_required_overrides(profile.hl7v2.overrides, translation.messages)),
                profile_version=translation.profile_version,
                extra=dict(translation.extra),
            )
        )
    return previews


def preview(
    profile: SiteProfile,
    order: OrderIn,
    events: Sequence[EventIn],
    terminology: Terminology,
    *,
    replay: Replay,
    now: datetime,
    template_limits: TemplateLimits | None = None,
) -> list[PreviewStep]:
    """The order (as ``order.placed``) and each event, judged by ``replay`` and translated for ``profile``."""
    issues = []
    if order.site_id != profile.site_id:
        issues.append(
            MappingIssue(
                "warning",
                "other-site",
                "order.site_id",
                f"the order is for {order.site_id!r}; previewed with the profile of {profile.site_id!r}",
            )
        )
    steps = preview_steps(profile, replay(order, events), terminology, now, template_limits=template_limits)
    if steps and issues:
        first = steps[0]
        steps[0] = PreviewStep(**{**first.__dict__, "issues": tuple(issues) + first.issues})
    return steps
