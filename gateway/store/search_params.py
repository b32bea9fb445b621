"""The search parameters we index and serve, as data (pure: no database, no clock).

One table, :data:`SEARCH_PARAMS`, drives three things so they cannot drift apart: what the store
indexes when it writes a version (``extract``), what the search endpoint accepts, and what
``/fhir/metadata`` advertises.  Token and reference values are indexed as ``(system, value)``
pairs (a reference ``Patient/p1`` as ``("Patient", "p1")``); dates as half-open ranges of
microseconds since the epoch, so a value's precision is kept (``2026-11`` is the whole month).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, Literal

__all__ = [
    "SearchParam",
    "SEARCH_PARAMS",
    "COMMON_PARAMS",
    "RESOURCE_TYPES",
    "INCLUDES",
    "date_range",
    "to_us",
    "from_us",
    "format_instant",
    "index_values",
]

ParamType = Literal["token", "reference", "date"]
TokenPair = tuple[str, str]
DateRange = tuple[int, int]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DATE_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$",
    re.ASCII,  # ASCII digits only: ``\d`` would take any script's digits
)


def to_us(value: datetime) -> int:
    """Microseconds since the epoch (naive datetimes are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def format_instant(us: int) -> str:
    """A FHIR ``instant`` with microseconds, in UTC: ``2026-11-21T22:40:52.123456Z``."""
    return from_us(us).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_DAY_US = 86_400_000_000
# Python's datetime spans the years 0001..9999: a range must lie within them once taken to UTC.
_MIN_US = to_us(datetime.min.replace(tzinfo=UTC))
_MAX_US = to_us(datetime.max.replace(tzinfo=UTC)) + 1


def _span_us(g: dict[str, str | None], year: int, month: int) -> int:
    """The length of the period the value's precision names, in microseconds (calendar arithmetic
    on integers, so a period ending after 9999-12-31 does not overflow ``datetime``)."""
    if g["m"] is None:
        return (366 if calendar.isleap(year) else 365) * _DAY_US
    if g["d"] is None:
        return calendar.monthrange(year, month)[1] * _DAY_US
    if g["H"] is None:
        return _DAY_US
    if g["S"] is None:
        return 60_000_000
    if g["f"] is None:
        return 1_000_000
    return int(10 ** (6 - min(len(g["f"]), 6)))


def date_range(text: str) -> DateRange:
    """The half-open range ``[start, end)`` in microseconds that a FHIR date/dateTime/instant covers.

    ``2026`` is the whole year, ``2026-11-21T10:00`` one minute, ``...T10:00:00.5Z`` 100 ms.
    A time without a zone is taken as UTC.  Raises ``ValueError`` with a reason on bad input,
    including a range reaching outside the years 0001..9999 in UTC.
    """
    match = _DATE_RE.match(text.strip())
    if not match:
        raise ValueError(f"not a FHIR date/dateTime: {text!r}")
    g = match.groupdict()
    tz: tzinfo = UTC
    try:
        if g["tz"] and g["tz"] != "Z":
            sign = 1 if g["tz"][0] == "+" else -1
            hours, minutes = int(g["tz"][1:3]), int(g["tz"][4:6])
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
        year, month, day = int(g["y"]), int(g["m"] or 1), int(g["d"] or 1)
        start = datetime(year, month, day, int(g["H"] or 0), int(g["M"] or 0), int(g["S"] or 0), tzinfo=tz)
        digits = (g["f"] or "")[:6]  # below a microsecond is below our resolution
        start_us = to_us(start) + (int(digits) * 10 ** (6 - len(digits)) if digits else 0)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"not a valid date: {text!r} ({exc})") from None
    end_us = start_us + _span_us(g, year, month)
    if start_us < _MIN_US or end_us > _MAX_US:
        raise ValueError(f"{text!r} reaches outside the years 0001-9999 (UTC)")
    return start_us, end_us


# --- extraction from resource JSON -------------------------------------------------------------

def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _code(key: str, system: str) -> Callable[[dict[str, Any]], list[TokenPair]]:
    def extract(resource: dict[str, Any]) -> list[TokenPair]:
        value = resource.get(key)
        return [(system, value)] if isinstance(value, str) else []

    return extract


def _codings(key: str) -> Callable[[dict[str, Any]], list[TokenPair]]:
    def extract(resource: dict[str, Any]) -> list[TokenPair]:
        pairs = []
        for concept in _as_list(resource.get(key)):
            for coding in _as_list(concept.get("coding") if isinstance(concept, dict) else None):
                if isinstance(coding, dict) and coding.get("code"):
                    pairs.append((coding.get("system", ""), coding["code"]))
        return pairs

    return extract


def _identifiers(key: str) -> Callable[[dict[str, Any]], list[TokenPair]]:
    def extract(resource: dict[str, Any]) -> list[TokenPair]:
        return [
            (ident.get("system", ""), ident["value"])
            for ident in _as_list(resource.get(key))
            if isinstance(ident, dict) and ident.get("value")
        ]

    return extract


def _references(key: str, target: str | None = None) -> Callable[[dict[str, Any]], list[TokenPair]]:
    def extract(resource: dict[str, Any]) -> list[TokenPair]:
        pairs = []
        for ref in _as_list(resource.get(key)):
            text = ref.get("reference") if isinstance(ref, dict) else None
            if not isinstance(text, str) or text.count("/") != 1 or text.startswith("#"):
                continue  # only relative literal references ``Type/id`` are searchable
            rtype, rid = text.split("/")
            if target is None or rtype == target:
                pairs.append((rtype, rid))
        return pairs

    return extract


def _dates(*keys: str) -> Callable[[dict[str, Any]], list[DateRange]]:
    def extract(resource: dict[str, Any]) -> list[DateRange]:
        ranges = []
        for key in keys:
            value = resource.get(key)
            try:
                if isinstance(value, str):
                    ranges.append(date_range(value))
                elif isinstance(value, dict) and (value.get("start") or value.get("end")):
                    lo = date_range(value["start"])[0] if value.get("start") else -(2**62)
                    hi = date_range(value["end"])[1] if value.get("end") else 2**62
                    ranges.append((lo, hi))
            except ValueError:
                continue  # the store indexes what it can; validation is the translation's job
        return ranges

    return extract


@dataclass(frozen=True)
class SearchParam:
    """One search parameter of one resource type.

    ``extract`` is ``None`` for the common parameters ``_id`` and ``_lastUpdated``, which are
    answered from the resource tables themselves rather than from the index tables.
    """

    name: str
    type: ParamType
    expression: str
    definition: str
    documentation: str
    extract: Callable[[dict[str, Any]], list[Any]] | None = None
    targets: tuple[str, ...] = ()


_SP = "http://hl7.org/fhir/SearchParameter/"
COMMON_PARAMS: tuple[SearchParam, ...] = (
    SearchParam("_id", "token", "Resource.id", _SP + "Resource-id", "Logical id of the resource"),
    SearchParam("_lastUpdated", "date", "Resource.meta.lastUpdated", _SP + "Resource-lastUpdated",
                "When the resource version last changed (prefixes eq, gt, ge, lt, le)"),
)


def _p(name: str, type_: ParamType, expression: str, definition: str, documentation: str,
       extract: Callable[[dict[str, Any]], list[Any]], targets: tuple[str, ...] = ()) -> SearchParam:
    return SearchParam(name, type_, expression, _SP + definition, documentation, extract, targets)


_TASK = (
    _p("status", "token", "Task.status", "Task-status", "Task status",
       _code("status", "http://hl7.org/fhir/task-status")),
    _p("business-status", "token", "Task.businessStatus", "Task-business-status",
       "CGT milestone (our business-status CodeSystem, or the site's override)",
       _codings("businessStatus")),
    _p("owner", "reference", "Task.owner", "Task-owner", "The manufacturer Organization",
       _references("owner"), ("Organization",)),
    _p("requester", "reference", "Task.requester", "Task-requester", "The ordering Practitioner",
       _references("requester"), ("Practitioner",)),
    _p("patient", "reference", "Task.for.where(resolve() is Patient)", "Task-patient",
       "The patient the product is for", _references("for", "Patient"), ("Patient",)),
    _p("subject", "reference", "Task.for", "Task-subject", "Task.for (the patient)",
       _references("for"), ("Patient",)),
    _p("based-on", "reference", "Task.basedOn", "Task-based-on", "The ServiceRequest (the order)",
       _references("basedOn"), ("ServiceRequest",)),
    _p("focus", "reference", "Task.focus", "Task-focus", "The ServiceRequest being fulfilled",
       _references("focus"), ("ServiceRequest",)),
    _p("identifier", "token", "Task.identifier", "Task-identifier", "Task identifiers",
       _identifiers("identifier")),
    _p("group-identifier", "token", "Task.groupIdentifier", "Task-group-identifier",
       "The Chain of Identity identifier (CoI); an ISBT 128 CoI also as scanned (&/ + 15 characters) "
       "or without its check character", _identifiers("groupIdentifier")),
    _p("modified", "date", "Task.lastModified", "Task-modified", "Task.lastModified",
       _dates("lastModified")),
)
_SERVICE_REQUEST = (
    _p("status", "token", "ServiceRequest.status", "ServiceRequest-status", "Order status",
       _code("status", "http://hl7.org/fhir/request-status")),
    _p("patient", "reference", "ServiceRequest.subject.where(resolve() is Patient)",
       "clinical-patient", "The patient", _references("subject", "Patient"), ("Patient",)),
    _p("identifier", "token", "ServiceRequest.identifier", "clinical-identifier",
       "Placer/filler order numbers", _identifiers("identifier")),
)
_OBSERVATION = (
    _p("based-on", "reference", "Observation.basedOn", "Observation-based-on",
       "The ServiceRequest", _references("basedOn"), ("ServiceRequest",)),
    _p("patient", "reference", "Observation.subject.where(resolve() is Patient)", "clinical-patient",
       "The patient", _references("subject", "Patient"), ("Patient",)),
    _p("code", "token", "Observation.code", "clinical-code", "What was measured (LOINC or ours)",
       _codings("code")),
    _p("date", "date", "Observation.effective", "clinical-date", "When it was measured",
       _dates("effectiveDateTime", "effectivePeriod", "effectiveInstant")),
    _p("focus", "reference", "Observation.focus", "Observation-focus", "The product measured",
       _references("focus"), ("BiologicallyDerivedProduct",)),
)
_PROVENANCE = (
    _p("target", "reference", "Provenance.target", "Provenance-target",
       "The product handed over, or what a retraction (activity NULLIFY) corrected",
       _references("target"), ("BiologicallyDerivedProduct", "Observation", "Task", "Provenance")),
)
# A site's infusion done (POST /fhir/Procedure, issue 13), stored as the site sent it, normalised.
_PROCEDURE = (
    _p("status", "token", "Procedure.status", "Procedure-status", "Procedure status (completed)",
       _code("status", "http://hl7.org/fhir/event-status")),
    _p("based-on", "reference", "Procedure.basedOn", "Procedure-based-on", "The ServiceRequest (the order)",
       _references("basedOn"), ("ServiceRequest",)),
    _p("patient", "reference", "Procedure.subject.where(resolve() is Patient)", "clinical-patient",
       "The patient", _references("subject", "Patient"), ("Patient",)),
    _p("subject", "reference", "Procedure.subject", "Procedure-subject", "Procedure.subject (the patient)",
       _references("subject"), ("Patient",)),
    _p("identifier", "token", "Procedure.identifier", "clinical-identifier",
       "The site request id (our site-request identifier system)", _identifiers("identifier")),
    _p("date", "date", "Procedure.performed", "clinical-date", "When the product was infused",
       _dates("performedDateTime", "performedPeriod")),
)

RESOURCE_TYPES: tuple[str, ...] = (
    "Task", "ServiceRequest", "Observation", "Provenance", "BiologicallyDerivedProduct",
    "Patient", "Organization", "Practitioner", "CodeSystem", "Procedure", "Flag",  # Flag: issue 16 alerts
)
_SPECIFIC: dict[str, tuple[SearchParam, ...]] = {
    "Task": _TASK, "ServiceRequest": _SERVICE_REQUEST, "Observation": _OBSERVATION,
    "Provenance": _PROVENANCE, "Procedure": _PROCEDURE,
}
SEARCH_PARAMS: dict[str, dict[str, SearchParam]] = {
    rtype: {p.name: p for p in COMMON_PARAMS + _SPECIFIC.get(rtype, ())} for rtype in RESOURCE_TYPES
}
# ``_include`` values: ``Task:focus`` follows the ``focus`` parameter's references, and so on.
INCLUDES: dict[str, tuple[str, ...]] = {"Task": ("Task:focus", "Task:patient")}


def index_values(resource: dict[str, Any]) -> tuple[list[tuple[str, str, str]], list[tuple[str, int, int]]]:
    """The index rows of one resource: ``(param, system, value)`` tokens and ``(param, lo, hi)`` dates."""
    tokens: set[tuple[str, str, str]] = set()
    dates: set[tuple[str, int, int]] = set()
    for param in SEARCH_PARAMS.get(resource["resourceType"], {}).values():
        if param.extract is None:
            continue
        values: Iterable[Any] = param.extract(resource)
        if param.type == "date":
            dates.update((param.name, lo, hi) for lo, hi in values)
        else:
            tokens.update((param.name, system, value) for system, value in values)
    return sorted(tokens), sorted(dates)
