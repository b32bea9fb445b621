"""Golden files: ``fixtures/events/<case>.json`` -> ``fixtures/expected/<site>/<case>.fhir.json``, ``.hl7``.

Regenerating is deliberate: ``python -m gateway.cli.goldens`` (tests only compare, never write).
The expected output of a case is, per event, its preview (:meth:`PreviewStep.to_json`): the FHIR
transaction Bundle and the mapping issues in ``.fhir.json``; the HL7v2 messages, one segment per
line, in ``.hl7``.  All times come from the case file and :data:`GOLDEN_NOW`, so
:data:`VOLATILE_FIELDS` (removed before comparing) is empty; it stays a named list so that a field
which must vary gets named here, not hidden in a test.

The command replays events through the lifecycle, which lives in ``gateway``; only :func:`main`
imports it (lazily), the functions here stay pure.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mappings.events import EventIn
from mappings.orders import OrderIn
from mappings.preview import PreviewStep

__all__ = [
    "CASES",
    "SITES",
    "GOLDEN_NOW",
    "VOLATILE_FIELDS",
    "FIXTURES",
    "Case",
    "load_case",
    "golden_fhir",
    "golden_hl7",
    "strip_volatile",
    "dumps",
    "expected_paths",
    "main",
]

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
CASES: tuple[str, ...] = ("journey-autologous", "journey-cancelled")
SITES: tuple[str, ...] = ("site-a", "site-b")
GOLDEN_NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
# Dotted paths (from a step's JSON) removed before comparing; keep it tiny.
VOLATILE_FIELDS: tuple[str, ...] = ()


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    placed_at: datetime
    order: OrderIn
    events: tuple[EventIn, ...]

    def for_site(self, site_id: str) -> Case:
        """The same journey ordered for ``site_id``."""
        order = OrderIn.model_validate({**self.order.model_dump(mode="json"), "site_id": site_id})
        return Case(self.name, self.description, self.placed_at, order, self.events)


def load_case(path: str | Path) -> Case:
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    return Case(
        name=Path(path).name.removesuffix(".json"),
        description=raw.get("description", ""),
        placed_at=datetime.fromisoformat(raw["placed_at"]),
        order=OrderIn.model_validate(raw["order"]),
        events=tuple(EventIn.model_validate(e) for e in raw["events"]),
    )


def _strip(node: Any, path: list[str]) -> None:
    if not path:
        return
    if isinstance(node, list):
        for item in node:
            _strip(item, path)
    elif isinstance(node, dict):
        if len(path) == 1:
            node.pop(path[0], None)
        elif path[0] in node:
            _strip(node[path[0]], path[1:])


def strip_volatile(
    steps: list[dict[str, Any]], fields: Sequence[str] = VOLATILE_FIELDS
) -> list[dict[str, Any]]:
    """A copy of ``steps`` without the named dotted fields (lists are traversed)."""
    copied: list[dict[str, Any]] = json.loads(json.dumps(steps))
    for dotted in fields:
        _strip(copied, dotted.split("."))
    return copied


def golden_fhir(steps: Sequence[PreviewStep]) -> list[dict[str, Any]]:
    """Per event: its preview without the HL7v2 messages, the Bundle reduced to what a store would write.

    Entries whose resource is identical to the version written by an earlier event are replaced by
    their ``Type/id`` in ``unchanged``: that keeps the files reviewable and shows which versions an
    event creates (a replayed or purely late event changes no Task).
    """
    latest: dict[str, Any] = {}
    golden = []
    for step in steps:
        item = {k: v for k, v in step.to_json().items() if k != "hl7v2"}
        bundle = item.get("bundle")
        if bundle is not None:
            changed, unchanged = [], []
            for entry in bundle.get("entry", []):
                url = entry["request"]["url"]
                if latest.get(url) == entry["resource"]:
                    unchanged.append(url)
                else:
                    latest[url] = entry["resource"]
                    changed.append(entry)
            item["bundle"] = {**bundle, "entry": changed}
            item["unchanged"] = unchanged
        golden.append(item)
    return golden


def golden_hl7(steps: Sequence[PreviewStep]) -> str:
    """Per event a ``# <event_id> <type>`` line, then each message's segments one per line."""
    lines = []
    for step in steps:
        lines.append(f"# {step.event_id} {step.event_type.value}")
        for message in step.messages:
            lines.extend(segment for segment in message.er7.split("\r") if segment)
            lines.append("")
    return "\n".join(lines) + "\n"


def dumps(steps: list[dict[str, Any]]) -> str:
    return json.dumps(steps, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def expected_paths(site_id: str, case: str, root: Path = FIXTURES) -> tuple[Path, Path]:
    base = root / "expected" / site_id
    return base / f"{case}.fhir.json", base / f"{case}.hl7"


Render = Callable[[str, Case], list[PreviewStep]]


def write_goldens(render: Render, root: Path = FIXTURES) -> list[Path]:
    """Write every case for every demo site; returns the files written."""
    written = []
    for site_id in SITES:
        for case_name in CASES:
            case = load_case(root / "events" / f"{case_name}.json").for_site(site_id)
            steps = render(site_id, case)
            fhir_path, hl7_path = expected_paths(site_id, case_name, root)
            fhir_path.parent.mkdir(parents=True, exist_ok=True)
            fhir_path.write_text(dumps(golden_fhir(steps)), encoding="utf-8")
            hl7_path.write_text(golden_hl7(steps), encoding="utf-8")
            written += [fhir_path, hl7_path]
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gateway.cli.goldens``: regenerate every golden file from the fixtures."""
    from gateway.config import load_settings  # the command sits at the top of the stack
    from gateway.intake.replay import preview_order
    from mappings.profile.loader import load_profile
    from terminology import load_terminology

    settings, terminology = load_settings(), load_terminology()

    def render(site_id: str, case: Case) -> list[PreviewStep]:
        profile = load_profile(FIXTURES / "profiles" / f"{site_id}.yaml")
        return preview_order(
            settings, profile, case.order, case.events, terminology, now=GOLDEN_NOW, placed_at=case.placed_at
        )

    from gateway.cli.site_request_goldens import write_site_request_goldens
    from gateway.intake.replay import replay_journey

    def replay(case: Case, events: Sequence[EventIn]) -> list[tuple[Any, Any]]:
        steps = replay_journey(settings, case.order, events, placed_at=case.placed_at)
        return [(s.snapshot, s.record) for s in steps if s.snapshot is not None and s.record is not None]

    def profile_of(site_id: str) -> Any:
        return load_profile(FIXTURES / "profiles" / f"{site_id}.yaml")

    for path in [*write_goldens(render), *write_site_request_goldens(SITES, profile_of, terminology, replay)]:
        print(path.relative_to(FIXTURES.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
