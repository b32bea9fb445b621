"""Parse and check FHIR search and history query parameters (pure).

Repeated parameters are ANDed, comma-separated values ORed.  Dates take the prefixes ``eq``
(default), ``gt``, ``ge``, ``lt``, ``le``; tokens ``code``, ``system|code``, ``|code``, ``system|``;
references ``Type/id``, ``id`` or an absolute URL on this server.  Anything unknown is a 400
OperationOutcome unless the client sent ``Prefer: handling=lenient``, in which case it is ignored
(and left out of the self link).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.fhir_api.outcome import FhirError
from gateway.fhir_api.search_limits import SearchLimits, check_items
from gateway.store.search_params import INCLUDES, SEARCH_PARAMS, SearchParam, date_range
from mappings.ids import ISBT128_COI_SYSTEM
from terminology.isbt128 import normalize_coi

__all__ = [
    "DEFAULT_COUNT",
    "MAX_COUNT",
    "RESULT_PARAMS",
    "Filter",
    "SearchQuery",
    "HistoryQuery",
    "parse_search",
    "parse_history",
    "is_lenient",
    "is_fhir_id",
    "MAX_VERSION_ID",
]

DEFAULT_COUNT = 50
MAX_COUNT = 1000
RESULT_PARAMS = ("_count", "_sort", "_include", "_summary", "_total", "_totalMethod")
_TOTAL_METHOD = "_totalMethod"
_IGNORED = ("_format",)  # handled by content negotiation
_PREFIX_RE = re.compile(r"^([a-z]{2})(?=[0-9])")
_DATE_PREFIXES = ("eq", "gt", "ge", "lt", "le")
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
MAX_VERSION_ID = 2**31 - 1  # the store's version_id column is a 32-bit INTEGER

Pair = tuple[str, str]


@dataclass(frozen=True)
class Filter:
    """One parameter occurrence; ``values`` are alternatives (OR).

    token: ``(system or None for any, code or None for any)``; reference: ``(type or None, id)``;
    date: ``(prefix, lo_us, hi_us)``.
    """

    param: SearchParam
    values: tuple[tuple[object, ...], ...]


@dataclass(frozen=True)
class SearchQuery:
    resource_type: str
    filters: tuple[Filter, ...]
    count: int
    descending: bool
    includes: tuple[str, ...]
    summary_count: bool
    total: bool
    params: tuple[Pair, ...]  # the parameters honoured, in request order (self link, cursor)


@dataclass(frozen=True)
class HistoryQuery:
    since_us: int | None
    count: int
    params: tuple[Pair, ...]


def is_lenient(prefer: str | None) -> bool:
    if not prefer:
        return False
    prefs = {p.strip().replace(" ", "").lower() for p in re.split(r"[,;]", prefer)}
    return "handling=lenient" in prefs


def is_fhir_id(value: str) -> bool:
    """FHIR R4 ``id``: ``[A-Za-z0-9\\-\\.]{1,64}`` (so no NUL, space or ``/`` ever reaches SQL)."""
    return _ID_RE.fullmatch(value) is not None


def _bad(diagnostics: str, expression: str | None = None, code: str = "invalid") -> FhirError:
    return FhirError(400, code, diagnostics, expression=expression)


def _split(name: str, raw: str) -> list[str]:
    values = raw.split(",")
    if not raw or any(not v for v in values):
        raise _bad(f"{name}: empty value", name)
    return values


def _token(name: str, value: str) -> tuple[str | None, str | None]:
    if "|" not in value:
        return None, value
    system, _, code = value.partition("|")
    if not system and not code:
        raise _bad(f"{name}: '|' alone is not a token", name)
    return system, code or None


def _coi(system: str | None, value: str | None) -> tuple[str | None, str | None]:
    """An ISBT 128 CoI as scanned (``&/`` + 15 characters; the check character is printed, not
    encoded) or keyed without its check character, in the normal form the Task stores."""
    if value is None or system not in (None, ISBT128_COI_SYSTEM):
        return system, value
    try:
        return system, normalize_coi(value)
    except ValueError:
        return system, value  # not an ISBT 128 CoI (a manufacturer's own format): as given


def _reference(param: SearchParam, value: str, base: str | None) -> tuple[str | None, str]:
    if base and value.startswith(f"{base}/"):  # an absolute URL on this server: its ``Type/id``
        value = value[len(base) + 1:]
    parts = value.split("/")
    if len(parts) == 1 and _ID_RE.match(value):
        return None, value
    if len(parts) == 2 and _ID_RE.match(parts[1]):
        if param.targets and parts[0] not in param.targets:
            raise _bad(f"{param.name}: refers to {'/'.join(param.targets)}, not {parts[0]}", param.name)
        return parts[0], parts[1]
    if "://" in value:
        raise _bad(f"{param.name}: {value!r} is not a resource on this server", param.name)
    raise _bad(f"{param.name}: use 'Type/id' or 'id' (got {value!r})", param.name)


def _date(name: str, value: str) -> tuple[str, int, int]:
    prefix = "eq"
    match = _PREFIX_RE.match(value)
    if match:
        prefix, value = match.group(1), value[2:]
        if prefix not in _DATE_PREFIXES:
            raise _bad(f"{name}: prefix {prefix!r} is not supported (use eq, gt, ge, lt, le)", name,
                       code="not-supported")
    try:
        lo, hi = date_range(value)
    except ValueError as exc:
        raise _bad(f"{name}: {exc}", name) from None
    return prefix, lo, hi


def _filter(param: SearchParam, raw: str, base: str | None) -> Filter:
    values: list[tuple[object, ...]] = []
    for value in _split(param.name, raw):
        if param.name == "_id":
            if not is_fhir_id(value):
                raise _bad(f"_id: {value!r} is not a FHIR id ([A-Za-z0-9-.]{{1,64}})", "_id")
            values.append((None, value))
        elif param.name == "group-identifier":
            values.append(_coi(*_token(param.name, value)))
        elif param.type == "token":
            values.append(_token(param.name, value))
        elif param.type == "reference":
            values.append(_reference(param, value, base))
        else:
            values.append(_date(param.name, value))
    return Filter(param, tuple(values))


def _count(raw: str) -> int:
    """ASCII digits only (``str.isdigit`` takes ``²``, which ``int`` refuses); any length, capped."""
    if not (raw.isascii() and raw.isdigit()):
        raise _bad(f"_count must be a non-negative integer (got {raw[:32]!r})", "_count")
    digits = raw.lstrip("0")
    return MAX_COUNT if len(digits) > len(str(MAX_COUNT)) else min(int(digits or "0"), MAX_COUNT)


def _refuse_nul(items: Sequence[Pair]) -> None:
    """A NUL character is in no FHIR string (and PostgreSQL text cannot hold one)."""
    for key, value in items:
        if "\x00" in key or "\x00" in value:
            raise _bad(f"{key!r}: a NUL character is not allowed in a search parameter", key)


def _once(items: Sequence[Pair], name: str) -> None:
    if sum(1 for key, _ in items if key == name) > 1:
        raise _bad(f"{name} may appear only once", name)


def parse_search(resource_type: str, items: Sequence[Pair], *, lenient: bool,
                 base: str | None = None, limits: SearchLimits = SearchLimits()) -> SearchQuery:
    """``base``: this server's FHIR base URL; reference values under it are taken as ``Type/id``.
    Beyond ``limits`` the search is refused ``too-costly`` before any value is parsed."""
    check_items(limits, items)
    known = SEARCH_PARAMS[resource_type]
    filters: list[Filter] = []
    honoured: list[Pair] = []
    count, descending, total, summary_count = DEFAULT_COUNT, False, False, False
    includes: list[str] = []
    _refuse_nul(items)
    for name in ("_count", "_sort", "_summary", "_total", _TOTAL_METHOD):
        _once(items, name)
    for key, value in items:
        if key in _IGNORED:
            continue
        if key in known:
            filters.append(_filter(known[key], value, base))
        elif key == "_count":
            count = _count(value)
        elif key == "_sort":
            if value not in ("_lastUpdated", "-_lastUpdated"):
                raise _bad(f"_sort={value} is not supported (use _lastUpdated or -_lastUpdated)", "_sort",
                           code="not-supported")
            descending = value.startswith("-")
        elif key == "_include":
            if value not in INCLUDES.get(resource_type, ()):
                allowed = ", ".join(INCLUDES.get(resource_type, ())) or "none"
                raise _bad(f"_include={value} is not supported for {resource_type} (supported: {allowed})",
                           "_include", code="not-supported")
            if value not in includes:
                includes.append(value)
        elif key == "_summary":
            if value not in ("count", "false"):
                raise _bad(f"_summary={value} is not supported (use count)", "_summary", code="not-supported")
            summary_count = value == "count"
        elif key == "_total":
            if value not in ("none", "estimate", "accurate"):
                raise _bad(f"_total={value} is not valid (none, estimate, accurate)", "_total")
            total = value != "none"
        elif key == _TOTAL_METHOD:  # fhirpy's count() (an Aidbox parameter): an exact total
            if value not in ("count", "estimate"):
                raise _bad(f"{_TOTAL_METHOD}={value} is not valid (count, estimate)", _TOTAL_METHOD)
            total = True
        elif lenient:
            continue
        else:
            raise _bad(f"Unknown or unsupported search parameter {key!r} for {resource_type} "
                       "(send 'Prefer: handling=lenient' to ignore it)", key, code="not-supported")
        honoured.append((key, value))
    if count == 0:
        summary_count = True
    return SearchQuery(resource_type, tuple(filters), count, descending, tuple(includes), summary_count,
                       total or summary_count, tuple(honoured))


def parse_history(items: Sequence[Pair], *, lenient: bool) -> HistoryQuery:
    since: int | None = None
    count = DEFAULT_COUNT
    honoured: list[Pair] = []
    _refuse_nul(items)
    for name in ("_since", "_count"):
        _once(items, name)
    for key, value in items:
        if key in _IGNORED:
            continue
        if key == "_since":
            try:
                since = date_range(value)[0]
            except ValueError as exc:
                raise _bad(f"_since: {exc}", "_since") from None
        elif key == "_count":
            count = max(_count(value), 1)
        elif lenient:
            continue
        else:
            raise _bad(f"Unknown or unsupported history parameter {key!r} (supported: _since, _count)", key,
                       code="not-supported")
        honoured.append((key, value))
    return HistoryQuery(since, count, tuple(honoured))
