"""Translation of a retraction: the correction a site receives when an event was entered in error.

``translate_retraction(before, after, retracted, retraction, profile, terminology, now)`` is pure,
like :func:`mappings.translate.translate`, and returns the same :class:`~mappings.result.Translation`.
``before`` is the order with the retracted event, ``after`` the order without it (its events carry
the ``late``/``status_after`` of the replay, ``status`` the recomputed status).  What the site gets:

* the order's resources as they now stand: the translation of the newest remaining event, so the
  Task (status, businessStatus, inputs, lastModified), the ServiceRequest and the products are what
  they would be had the retracted event never been accepted (its HL7v2 messages were sent when it
  was accepted and are not sent again);
* the Observations and Provenance of every other remaining event translated again, so one that
  pointed at what the retracted event made (a custody handoff of the material it recorded, results
  of the lot it started) points at what the remaining events say (the store keeps a new version only
  where the content changed; their mapping issues were reported when they were accepted);
* the Observations born from the retracted event with ``status: entered-in-error``;
* the products only the retracted event created: ``unavailable`` with our entered-in-error
  extension (R4 has no such BiologicallyDerivedProduct status);
* one Provenance (activity ``NULLIFY``) recording the retraction, its reason and what it touched
  (a retracted custody transfer's own Provenance is targeted by it: R4 Provenance has no status);
* HL7v2: :func:`mappings.hl7v2.retraction.render_retraction_messages` (status message with the
  recomputed ORC-5; results sent before come again with OBX-11 ``W``).

Every time comes from the events or the retraction, never from ``now`` (passed on to HL7v2 MSH-7).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mappings.events import EventRecord
from mappings.fhir.model import fhir_instant
from mappings.fhir.retraction import build_retraction_provenance, mark_entered_in_error
from mappings.hl7v2.retraction import RETRACTION_SUFFIX, render_retraction_messages
from mappings.ids import reference
from mappings.profile.schema import SiteProfile
from mappings.profile.template_sandbox import TemplateLimits
from mappings.result import Translation
from mappings.snapshot import OrderSnapshot
from mappings.translate import translate
from mappings.translate_journey import Journey
from mappings.translate_products import build_event_resources, build_products
from terminology import Terminology

__all__ = ["Retraction", "translate_retraction"]

_BDP = "BiologicallyDerivedProduct"


@dataclass(frozen=True)
class Retraction:
    """What the manufacturer said and when the gateway accepted it."""

    reason: str
    retracted_at: datetime


def _without_messages(profile: SiteProfile) -> SiteProfile:
    return profile.model_copy(update={"hl7v2": profile.hl7v2.model_copy(update={"enabled": False})})


def _ref(resource: dict[str, Any]) -> dict[str, str]:
    return reference(resource["resourceType"], resource["id"])


def translate_retraction(
    before: OrderSnapshot,
    after: OrderSnapshot,
    retracted: EventRecord,
    retraction: Retraction,
    profile: SiteProfile,
    terminology: Terminology,
    now: datetime,
    *,
    template_limits: TemplateLimits | None = None,
) -> Translation:
    """The resources and HL7v2 messages that correct the site's view once ``retracted`` is withdrawn."""
    if any(e.event_id == retracted.event_id for e in after.events):
        raise ValueError("the order after the retraction must not contain the retracted event")
    current = translate(after, after.events[-1], _without_messages(profile), terminology, now)
    issues = list(current.issues)
    retracted_at = fhir_instant(retraction.retracted_at)

    of_event = Journey(before, retracted, profile)
    made, found = build_event_resources(of_event, terminology)
    issues += found
    marked = [mark_entered_in_error(r, retracted_at=retracted_at, reason=retraction.reason)
              for r in made if r["resourceType"] == "Observation"]
    untouched = [r for r in made if r["resourceType"] != "Observation"]  # a custody Provenance

    again: list[dict[str, Any]] = []
    for record in after.events[1:-1]:  # the newest one is in ``current``
        resources, _ = build_event_resources(Journey(after, record, profile), terminology)
        again.extend(resources)

    still_there = {r["id"] for r in current.resources if r["resourceType"] == _BDP}
    products_before = build_products(Journey(before, before.events[-1], profile))
    orphans = [mark_entered_in_error(p, retracted_at=retracted_at, reason=retraction.reason)
               for p in products_before if p["id"] not in still_there]

    journey = Journey(after, after.events[-1], profile)
    provenance = build_retraction_provenance(
        of_event.event_resource_id("Provenance", RETRACTION_SUFFIX),
        targets=[reference("Task", journey.task_id), *(_ref(r) for r in (*marked, *untouched, *orphans))],
        retracted_at=retracted_at,
        reason=retraction.reason,
        author=journey.manufacturer_ref,
        event={"identifier": {"system": journey.event_system, "value": retracted.event_id},
               "display": f"{retracted.type.value} {retracted.event_id}"},
        profile_version=profile.version,
    )
    messages, hl7_issues = render_retraction_messages(
        before, after, retracted, reason=retraction.reason, retracted_at=retraction.retracted_at,
        profile=profile, terminology=terminology, now=now, template_limits=template_limits)
    issues += hl7_issues
    return Translation(
        resources=(*current.resources, *again, *marked, *orphans, provenance),
        messages=messages,
        issues=tuple(issues),
        profile_version=profile.version,
        extra={**current.extra, "retracted_event_id": retracted.event_id},
    )

