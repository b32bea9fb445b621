"""How big one FHIR search may be (pure): at most ``max_params`` parameters and ``max_values`` values
per parameter name, else ``400`` OperationOutcome ``too-costly`` naming the limit.

The raw query string or form body is counted (``&``-separated fields) before it is parsed, so an
abusive request (80,000 ``identifier=x``) costs one pass of ``bytes.count``; the values of each
parameter (its repeats and its comma-separated OR values together) are counted before any of them is
parsed.  Each occurrence of a parameter counts towards ``max_params``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.fhir_api.outcome import FhirError

__all__ = ["SearchLimits", "check_raw", "check_items", "too_costly"]


@dataclass(frozen=True)
class SearchLimits:
    """The settings ``fhir_search_max_params`` and ``fhir_search_max_values``."""

    max_params: int = 50
    max_values: int = 100


def too_costly(diagnostics: str, expression: str | None = None) -> FhirError:
    return FhirError(400, "too-costly", diagnostics, expression=expression)


def _fields(raw: bytes | str) -> int:
    """An upper bound on the number of ``name=value`` fields, by counting separators only."""
    if not raw:
        return 0
    return (raw.count(b"&") if isinstance(raw, bytes) else raw.count("&")) + 1


def check_raw(limits: SearchLimits, *raws: bytes | str) -> None:
    """Refuse before parsing when the query string and form body together hold too many fields."""
    count = sum(_fields(raw) for raw in raws)
    if count > limits.max_params:
        raise too_costly(f"The search has {count} parameters; at most {limits.max_params} are allowed "
                         "(fhir_search_max_params)")


def check_items(limits: SearchLimits, items: Sequence[tuple[str, str]]) -> None:
    """Refuse parsed parameters beyond the limits (before any value is parsed)."""
    if len(items) > limits.max_params:
        raise too_costly(f"The search has {len(items)} parameters; at most {limits.max_params} are allowed "
                         "(fhir_search_max_params)")
    values: dict[str, int] = {}
    for key, value in items:
        values[key] = values.get(key, 0) + value.count(",") + 1
        if values[key] > limits.max_values:
            raise too_costly(f"{key[:64]!r} has more than {limits.max_values} values (repeats and "
                             "comma-separated values together); at most "
                             f"{limits.max_values} are allowed (fhir_search_max_values)", key[:64])
