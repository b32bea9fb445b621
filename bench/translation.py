"""Part 1: events/s of the pure translation against the bare cost of the same output.

Measured: ``mappings.translate`` for every accepted event of many distinct orders (both demo sites,
both fixture journeys), each HL7v2 message also checked structurally
(``mappings.er7.structure.check_segment_order``).  One process, one core.

Baseline: for the same events, the bare cost of what the translation must produce: every FHIR
resource validated and dumped with ``fhir.resources`` R4B (``model_validate`` + ``model_dump``), and
every HL7v2 message built with hl7apy object by object (a ``Segment`` per segment, a ``Field`` per
non-empty field set from its ER7 text, then ``to_er7``).  The hl7apy build is checked to produce the
same bytes as the gateway, so both sides produce the same output.
"""

from __future__ import annotations

import gc
import time
from datetime import UTC, datetime
from typing import Any

__all__ = ["run_translation", "hl7apy_build"]

_NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def hl7apy_build(er7: str, version: str) -> str:
    """Build ``er7`` with hl7apy object by object (tolerant validation) and return its ER7."""
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.core import Field, Segment

    tolerant = VALIDATION_LEVEL.TOLERANT
    out = []
    for line in er7.split("\r"):
        if not line:
            continue
        fields = line.split("|")
        name = fields[0]
        segment = Segment(name, version=version, validation_level=tolerant)
        if name == "MSH":
            segment.msh_1 = "|"
            segment.msh_2 = fields[1]
            values, first = fields[2:], 3
        else:
            values, first = fields[1:], 1
        for index, value in enumerate(values, start=first):
            if value:
                field = Field(f"{name}_{index}", version=version, validation_level=tolerant)
                field.value = value
                segment.add(field)
        out.append(segment.to_er7())
    return "\r".join(out) + "\r"


def _bare(resources: Any, messages: Any) -> int:
    from fhir.resources.R4B import get_fhir_model_class

    mismatches = 0
    for resource in resources:
        model = get_fhir_model_class(resource["resourceType"])
        model.model_validate(resource).model_dump(mode="json", exclude_none=True)
    for message in messages:
        if hl7apy_build(message.er7, message.version) != message.er7:
            mismatches += 1
    return mismatches


def run_translation(*, orders: int, max_seconds: float, baseline_seconds: float) -> dict[str, Any]:
    from bench.workload import FIXTURES, translation_steps
    from mappings.er7.structure import check_segment_order
    from mappings.profile.loader import load_profile
    from mappings.translate import translate
    from terminology import load_terminology

    terminology = load_terminology()
    profiles = {s: load_profile(FIXTURES / "profiles" / f"{s}.yaml") for s in ("site-a", "site-b")}
    for snapshot, record, site_id in translation_steps(2, start=900_000):  # warm-up: imports, model classes
        translate(snapshot, record, profiles[site_id], terminology, _NOW)
    steps = translation_steps(orders)
    outputs = []
    gc.collect()
    started = time.perf_counter()
    resources = messages = 0
    for snapshot, record, site_id in steps:
        translation = translate(snapshot, record, profiles[site_id], terminology, _NOW)
        for message in translation.messages:
            check_segment_order(message.er7)
        resources += len(translation.resources)
        messages += len(translation.messages)
        outputs.append(translation)
        if time.perf_counter() - started > max_seconds:
            break
    elapsed = time.perf_counter() - started
    events = len(outputs)

    gc.collect()
    base_started = time.perf_counter()
    base_events = mismatches = 0
    for translation in outputs:
        mismatches += _bare(translation.resources, translation.messages)
        base_events += 1
        if time.perf_counter() - base_started > baseline_seconds:
            break
    base_elapsed = time.perf_counter() - base_started
    rate = events / elapsed
    base_rate = base_events / base_elapsed
    return {
        "events": events,
        "distinct_orders": orders,
        "resources_per_event": round(resources / events, 2),
        "messages_per_event": round(messages / events, 2),
        "elapsed_s": round(elapsed, 3),
        "events_per_s": round(rate, 1),
        "baseline": {
            "what": "fhir.resources R4B validate+dump of the same resources + hl7apy object-by-object "
            "build of the same messages",
            "events": base_events,
            "elapsed_s": round(base_elapsed, 3),
            "events_per_s": round(base_rate, 1),
            "hl7apy_byte_mismatches": mismatches,
        },
        "ratio": round(rate / base_rate, 3),
        "target": {"events_per_s": 1000},
        "met": rate >= 1000,
    }
