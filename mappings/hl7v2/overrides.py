"""Apply a profile's per-field overrides (``hl7v2.overrides``) to rendered segments.

Each template is rendered once per event with the context of :mod:`mappings.profile.templates` and
replaces field *n* of every segment with that id, in every message of the event.  A template that
fails at run time, or passes one of its bounds (``TemplateLimits``: output per field, steps and
time per event), keeps the default value and records an ``error`` mapping issue.

An override may decorate an identifier field (``ORC-4: "{{ order.coi }}^{{ manufacturer.id }}"``) but
never replace the identifier itself: :func:`overridden_identifiers` names the fields (MRN, CoI, order
numbers, DIN, ...) whose first component an override would change, and the renderer then refuses the
message rather than send one patient's order under another identifier.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mappings.hl7v2.charset import IDENTIFIER_FIELDS
from mappings.hl7v2.fields import Segment
from mappings.profile.templates import RenderBudget, TemplateLimits, TemplateRenderError, render_template
from mappings.result import MappingIssue

__all__ = ["render_overrides", "apply_overrides", "overridden_identifiers"]

FieldValues = dict[tuple[str, int], str]


def render_overrides(overrides: Mapping[str, str], context: Mapping[str, Any],
                     issues: list[MappingIssue], limits: TemplateLimits | None = None) -> FieldValues:
    """``{("OBR", 4): "value"}`` for every override that rendered (all share one step budget)."""
    limits = limits if limits is not None else TemplateLimits()
    budget = RenderBudget.start(limits)
    values: FieldValues = {}
    for path, source in overrides.items():
        segment_id, _, number = path.partition("-")
        try:
            values[(segment_id, int(number))] = render_template(source, context, limits, budget)
        except TemplateRenderError as exc:
            issues.append(MappingIssue(severity="error", code="hl7v2-override-failed",
                                       path=f"profile.hl7v2.overrides.{path}",
                                       message=f"{exc}; the default value was sent"))
    return values


def apply_overrides(segments: list[Segment], values: FieldValues) -> None:
    """Replace the overridden fields in place."""
    if not values:
        return
    for seg in segments:
        for (segment_id, number), value in values.items():
            if seg[0] != segment_id:
                continue
            if len(seg) <= number:
                seg.extend([""] * (number + 1 - len(seg)))
            seg[number] = value


def _identifier(field: str) -> str:
    """The identifier in an ER7 field: the first component of its first repetition."""
    return field.split("~", 1)[0].split("^", 1)[0]


def overridden_identifiers(segments: list[Segment], values: FieldValues) -> list[str]:
    """The identifier fields (``PID-3``, ``ORC-4``, ...) of ``segments`` whose identifier ``values``
    would change.  A field the gateway left empty may be filled: there is no identifier to protect."""
    changed: set[str] = set()
    for seg in segments:
        for (segment_id, number), value in values.items():
            if seg[0] != segment_id or (segment_id, number) not in IDENTIFIER_FIELDS:
                continue
            current = _identifier(seg[number]) if len(seg) > number else ""
            if current and _identifier(value) != current:
                changed.add(f"{segment_id}-{number}")
    return sorted(changed)
