"""An HL7v2 message shown segment by segment with field names (the names are data: ``hl7_fields.json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

__all__ = ["Hl7Field", "Hl7Segment", "field_names", "segments_of", "MAX_SEGMENTS"]

MAX_SEGMENTS = 200  # a message shown with more is cut (the raw text stays available, folded)


@dataclass(frozen=True)
class Hl7Field:
    label: str  # "ORC-1 Order Control"
    value: str


@dataclass(frozen=True)
class Hl7Segment:
    name: str
    raw: str
    fields: list[Hl7Field]


@lru_cache(maxsize=1)
def field_names() -> dict[str, list[str]]:
    data = json.loads(files("gateway.console").joinpath("hl7_fields.json").read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def _label(segment: str, position: int) -> str:
    names = field_names().get(segment, [])
    name = names[position - 1] if 0 < position <= len(names) else ""
    return f"{segment}-{position} {name}".rstrip()


def segments_of(er7: str) -> list[Hl7Segment]:
    """The message's segments, each with its non-empty fields named (``MSH-1`` is the separator)."""
    lines = [s for s in er7.replace("\n", "\r").split("\r") if s][:MAX_SEGMENTS]
    shown: list[Hl7Segment] = []
    for line in lines:
        name = line[:3]
        separator = line[3] if name == "MSH" and len(line) > 3 else "|"
        parts = line.split(separator)
        fields: list[Hl7Field] = []
        if name == "MSH":
            fields.append(Hl7Field(_label("MSH", 1), separator))
            for i, value in enumerate(parts[1:], start=2):
                if value:
                    fields.append(Hl7Field(_label("MSH", i), value))
        else:
            for i, value in enumerate(parts[1:], start=1):
                if value:
                    fields.append(Hl7Field(_label(name, i), value))
        shown.append(Hl7Segment(name, line, fields))
    return shown
