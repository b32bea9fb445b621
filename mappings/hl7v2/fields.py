"""Field-level formatting for the direct ER7 builder: timestamps, numbers, composite values.

A segment is a plain list of already-encoded field strings: ``seg[0]`` is the segment id and
``seg[n]`` is field *n* (for MSH, ``seg[1]`` is MSH-1 ``|`` and ``seg[2]`` MSH-2), so a profile
override ``OBR-4`` replaces ``seg[4]``.  Composite helpers take raw user text and escape it; their
other arguments (codes from our tables, coding systems) are ours and contain no delimiters.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from zoneinfo import ZoneInfo

from mappings.er7.escape import escape

__all__ = [
    "Segment",
    "segment",
    "serialize",
    "site_zone",
    "format_ts",
    "format_date",
    "format_number",
    "is_hl7_number",
    "coded",
    "entity_id",
    "person_name",
]

Segment = list[str]

_NM = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)$")


def segment(segment_id: str, fields: dict[int, str]) -> Segment:
    """A segment with ``fields[n]`` in field *n* and empty fields between."""
    size = max(fields) + 1 if fields else 1
    seg = [""] * size
    seg[0] = segment_id
    for number, value in fields.items():
        seg[number] = value
    return seg


def serialize(seg: Segment) -> str:
    """ER7 for one segment, without the trailing ``\\r``; trailing empty fields are dropped."""
    end = len(seg)
    while end > 1 and seg[end - 1] == "":
        end -= 1
    if seg[0] == "MSH":
        return "MSH|" + "|".join(seg[2:end])
    return "|".join(seg[:end])


@lru_cache(maxsize=64)
def site_zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def format_ts(moment: datetime, zone: ZoneInfo) -> str:
    """HL7 TS/DTM in the site's timezone with its offset: ``20261121143000+0100`` (naive = UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone).strftime("%Y%m%d%H%M%S%z")


def format_date(day: date) -> str:
    return day.strftime("%Y%m%d")


def is_hl7_number(text: str) -> bool:
    """True if ``text`` is a valid HL7 NM value (sign, digits, optional decimal point; no exponent)."""
    return _NM.match(text) is not None


def format_number(value: float | str) -> str | None:
    """An HL7 NM rendering of ``value`` (``250``, ``0.00001``), or None if it is not a finite number."""
    if isinstance(value, str):
        text = value.strip()
        return text if is_hl7_number(text) else None
    if math.isnan(value) or math.isinf(value):
        return None
    try:
        text = format(Decimal(repr(value)), "f")
    except InvalidOperation:  # pragma: no cover - repr of a finite float is always a Decimal
        return None
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def coded(code: str, display: str, coding_system: str) -> str:
    """CE/CWE ``code^display^system`` with code and display escaped."""
    return f"{escape(code)}^{escape(display)}^{coding_system}"


def entity_id(value: str, namespace: str) -> str:
    """EI ``value^namespace`` with both escaped."""
    return f"{escape(value)}^{escape(namespace)}" if namespace else escape(value)


def person_name(family: str, given: list[str]) -> str:
    """XPN/XCN name part ``family^given^further given names`` (escaped)."""
    first = given[0] if given else ""
    further = " ".join(given[1:])
    name = f"{escape(family)}^{escape(first)}"
    return f"{name}^{escape(further)}" if further else name
