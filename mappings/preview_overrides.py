"""Preview checks of a profile's HL7v2 overrides: an override that renders a required field empty.

A template such as ``OBR-4: "{{ product.local_code }}"`` renders empty when the value it reads is
missing; the receiving engine then refuses the message (OBR-4 is required).  Preview reports it as an
``error`` mapping issue naming the field and the messages, before the profile goes live.

"Required" is the segment definition of the message's declared HL7 version, as hl7apy's reference
data has it (e.g. OBR-4, PID-3, PID-5, ORC-1, OBX-3, OBX-11, PV1-2; in 2.3 also ORC-7 and OBR-27).
A field counts as empty when it holds nothing but delimiters (``^^``).  Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

from hl7apy import load_reference
from hl7apy.exceptions import ChildNotFound

from mappings.result import Hl7Message, MappingIssue

__all__ = ["required_fields", "empty_required_overrides"]

_EMPTY = re.compile(r"^[\^&~ ]*$")


@lru_cache(maxsize=256)
def required_fields(segment_id: str, version: str) -> frozenset[int]:
    """Field numbers of ``segment_id`` that are required in HL7 ``version`` (empty for Z-segments)."""
    try:
        reference = load_reference(segment_id, "Segment", version)
    except (ChildNotFound, KeyError, ValueError):
        return frozenset()
    required = set()
    for name, _, (minimum, _maximum), *_ in reference[1]:
        if minimum >= 1:
            required.add(int(name.rsplit("_", 1)[1]))
    return frozenset(required)


def _fields(message: Hl7Message, segment_id: str, number: int) -> Iterable[str]:
    for line in message.er7.split("\r"):
        if line[:3] == segment_id and line[3:4] == "|":
            fields = line.split("|")
            yield fields[number] if number < len(fields) else ""


def empty_required_overrides(overrides: Mapping[str, str], messages: Iterable[Hl7Message]
                             ) -> list[MappingIssue]:
    """One ``error`` issue per override path that left a required field empty in some message."""
    empty: dict[str, list[str]] = {}
    for message in messages:
        for path in overrides:
            segment_id, _, raw = path.partition("-")
            number = int(raw)
            if number not in required_fields(segment_id, message.version):
                continue
            if any(_EMPTY.match(value) for value in _fields(message, segment_id, number)):
                empty.setdefault(path, []).append(message.message_type)
    return [
        MappingIssue(
            "error", "hl7v2-required-field-empty", f"profile.hl7v2.overrides.{path}",
            f"{path} rendered empty, required in this message ({', '.join(dict.fromkeys(types))}); "
            "the receiving engine will refuse it")
        for path, types in empty.items()
    ]
