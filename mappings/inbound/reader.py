"""A bounded ER7 reader for inbound messages: segments split once with the message's own delimiters,
fields read by number, components unescaped on demand, HL7 TS read into aware datetimes.

Every step is one linear pass (``str.split``); nothing is parsed that is not read, so a message with
absurd segment or field counts costs at most linear time.  The segment count is capped by the caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from mappings.er7.ack import Delimiters, unescape_text

__all__ = ["Segment", "Er7Reader", "TooManySegments", "parse_ts", "SEGMENT_SEPARATORS"]

SEGMENT_SEPARATORS = re.compile(r"\r\n|\r|\n")
_TS = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?(?:([+-])(\d{2})(\d{2}))?$"
)


class TooManySegments(ValueError):
    """The message has more segments than allowed."""


@dataclass(frozen=True)
class Segment:
    """One segment: its id, its sequence among segments with that id (1-based), raw fields.

    ``fields[n]`` is field n as in the standard (for MSH, ``fields[1]`` is MSH-1 and ``fields[2]`` MSH-2).
    """

    name: str
    sequence: int
    fields: tuple[str, ...]

    def raw(self, n: int) -> str:
        return self.fields[n] if 0 < n < len(self.fields) else ""


class Er7Reader:
    """Segments of one message, read with its own delimiters."""

    def __init__(self, text: str, delimiters: Delimiters, *, max_segments: int) -> None:
        self.delimiters = delimiters
        lines = [s for s in SEGMENT_SEPARATORS.split(text) if s.strip()]
        if len(lines) > max_segments:
            raise TooManySegments(f"more than {max_segments} segments")
        counts: dict[str, int] = {}
        segments: list[Segment] = []
        sep = delimiters.field
        for line in lines:
            name = line[:3]
            counts[name] = counts.get(name, 0) + 1
            if name == "MSH":
                fields = ("MSH", sep, *line[4:].split(sep))
            else:
                fields = tuple(line.split(sep))
            segments.append(Segment(name, counts[name], fields))
        self.segments: tuple[Segment, ...] = tuple(segments)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.segments]

    def first(self, name: str) -> Segment | None:
        return next((s for s in self.segments if s.name == name), None)

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]

    def component(self, segment: Segment | None, field: int, component: int = 1) -> str:
        """Component ``component`` of the first repetition of ``field``, unescaped and stripped."""
        if segment is None:
            return ""
        d = self.delimiters
        value = segment.raw(field).split(d.repetition, 1)[0]
        parts = value.split(d.component)
        piece = parts[component - 1] if component <= len(parts) else ""
        return unescape_text(piece.split(d.subcomponent, 1)[0], d).strip()

    def text(self, segment: Segment | None, field: int) -> str:
        """The whole field as text (repetitions joined by a line break), unescaped and stripped."""
        if segment is None:
            return ""
        d = self.delimiters
        reps = [unescape_text(r, d).strip() for r in segment.raw(field).split(d.repetition)]
        return "\n".join(r for r in reps if r)


def parse_ts(value: str, zone: ZoneInfo) -> datetime | None:
    """An HL7 TS/DTM (``YYYY[MM[DD[HH[MM[SS[.S...]]]]]][+/-ZZZZ]``, at least a date) as an aware
    datetime; without an offset it is read in ``zone``.  None when it is not a valid TS."""
    match = _TS.match(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    if month is None or day is None:
        return None
    micro = int((fraction or "0").ljust(6, "0")[:6])
    try:
        if sign is not None:
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            if offset >= timedelta(hours=24):
                return None
            tz: timezone | ZoneInfo = timezone(offset if sign == "+" else -offset)
        else:
            tz = zone
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            micro,
            tzinfo=tz,
        )
    except ValueError:
        return None
