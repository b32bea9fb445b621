"""OBX segments for measurements and release results, with the abnormal flag for out-of-specification.

OBX-2 is ``NM`` for a number, ``CWE`` (``CE`` before 2.5) for a qualitative result with a coded answer
(sterility ``negative`` -> ``260385009^Negative^SCT``, SNOMED CT, from
``terminology/data/qualitative_results.json``), ``ST`` for other text (the FHIR side warns
``unmapped-result`` when a coded answer was expected); OBX-3 is the site's code (profile
``measurement_codes``) or ours (LOINC where one exists); OBX-6 the UCUM unit; OBX-7 the
specification as the reference range; OBX-8 (table 0078) ``L``/``H`` for a number below/above its
specification, ``A`` for a coded or text result that does not match it (a coded answer is compared
by code: ``not detected`` meets ``negative``), empty when within it; OBX-11 ``F`` (final).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from mappings.er7.escape import escape
from mappings.events import Measurement
from mappings.hl7v2.fields import Segment, coded, format_number, format_ts, segment
from mappings.profile.schema import SiteProfile
from mappings.result import MappingIssue
from terminology import Concept, Terminology
from terminology.hl7_tables import load_hl7_tables

__all__ = ["abnormal_flag", "render_observations", "RESULT_STATUS_FINAL"]

RESULT_STATUS_FINAL = "F"  # OBX-11 / OBR-25, tables 0085 / 0123

_BOUND = re.compile(r"^\s*(>=|<=|>|<|=)\s*([+-]?\d+(?:\.\d+)?)\s*$")
_RANGE = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)\s*(?:-|–|\.\.)\s*([+-]?\d+(?:\.\d+)?)\s*$")


def _as_float(value: float | str) -> float | None:
    if isinstance(value, float | int):
        return float(value)
    try:
        return float(value.strip())
    except ValueError:
        return None


def abnormal_flag(value: float | str, specification: str | None) -> str | None:
    """OBX-8 for ``value`` against ``specification``: ``""`` within it, ``L``/``H``/``A`` outside.

    None when the specification cannot be evaluated (the caller reports it and leaves OBX-8 empty).
    """
    if specification is None or not specification.strip():
        return ""
    number = _as_float(value)
    bound = _BOUND.match(specification)
    if bound is not None and number is not None:
        op, limit = bound.group(1), float(bound.group(2))
        ok = {">=": number >= limit, "<=": number <= limit, ">": number > limit, "<": number < limit,
              "=": number == limit}[op]
        if ok:
            return ""
        return "L" if op in (">=", ">") or (op == "=" and number < limit) else "H"
    span = _RANGE.match(specification)
    if span is not None and number is not None:
        low, high = float(span.group(1)), float(span.group(2))
        return "L" if number < low else "H" if number > high else ""
    if bound is None and span is None and isinstance(value, str):
        return "" if value.strip().casefold() == specification.strip().casefold() else "A"
    return None


def _coded_flag(terminology: Terminology, code: str, answer: Concept | None,
                specification: str | None) -> str | None:
    """OBX-8 for a coded answer against a coded specification (``negative`` = ``not detected``)."""
    if answer is None or not specification:
        return None
    expected = terminology.qualitative_result(code, specification)
    if expected is None:
        return None
    return "" if expected.code == answer.code else "A"


def render_observations(
    measurements: Sequence[Measurement],
    *,
    path: str,
    observed_at: datetime,
    first_set_id: int,
    profile: SiteProfile,
    terminology: Terminology,
    zone: ZoneInfo,
    issues: list[MappingIssue],
) -> list[Segment]:
    """One OBX per measurement, set ids counting from ``first_set_id``."""
    tables = load_hl7_tables()
    coded_type = "CWE" if profile.hl7v2.version == "2.5.1" else "CE"
    observed = format_ts(observed_at, zone)
    segments: list[Segment] = []
    for index, measurement in enumerate(measurements):
        code = str(measurement.code)
        where = f"{path}[{index}]"
        local = profile.measurement_codes.get(code)
        concept, issue = terminology.measurement_or_fallback(code, path=f"{where}.code")
        if issue is not None and local is None:
            issues.append(issue)
        if local is not None:
            display = local.display or concept.display
            identifier = coded(local.code, display, tables.coding_system(local.system))
        else:
            identifier = coded(concept.code, concept.display, tables.coding_system(concept.system))
        kind = terminology.measurement_kind(code) if issue is None else "quantity"
        number = format_number(measurement.value)
        unit = measurement.unit or concept.unit
        answer = (terminology.qualitative_result(code, measurement.value)
                  if kind == "coded" and isinstance(measurement.value, str) else None)
        if answer is not None:
            value_type, units = coded_type, ""
            value = coded(answer.code, answer.display, tables.coding_system(answer.system))
        elif kind == "coded" and isinstance(measurement.value, str):  # the FHIR side warns unmapped-result
            value_type, value, units = "ST", escape(measurement.value), ""
        elif number is not None:
            value_type, value = "NM", number
            units = f"{escape(unit)}^{escape(unit)}^UCUM" if unit else ""
        else:
            value_type, value = "ST", escape(str(measurement.value))
            units = f"{escape(unit)}^{escape(unit)}^UCUM" if unit else ""
        flag = _coded_flag(terminology, code, answer, measurement.specification)
        if flag is None:
            flag = abnormal_flag(measurement.value, measurement.specification)
        if flag is None:
            issues.append(MappingIssue(
                severity="warning", code="specification-not-evaluated", path=f"{where}.specification",
                message="the specification could not be compared with the value; OBX-8 left empty"))
            flag = ""
        segments.append(segment("OBX", {
            1: str(first_set_id + index), 2: value_type, 3: identifier, 5: value, 6: units,
            7: escape(measurement.specification or ""), 8: flag, 11: RESULT_STATUS_FINAL, 14: observed,
        }))
    return segments
