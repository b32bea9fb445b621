"""Golden files: ``fixtures/events/<case>.json`` -> ``fixtures/expected/<site>/<case>.fhir.json``, ``.hl7``;
site requests: ``fixtures/site-requests/<case>.json`` -> ``fixtures/expected/<site>/<case>.*`` (see below).

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

from mappings.events import EventIn, EventRecord
from mappings.hl7v2.render import render_messages
from mappings.orders import OrderIn
from mappings.preview import PreviewStep, issue_json
from mappings.profile.schema import SiteProfile
from mappings.result import Hl7Message
from mappings.site_request import SiteRequestView
from mappings.snapshot import OrderSnapshot
from mappings.translate import translate
from mappings.translate_site_request import translate_site_request
from terminology import Terminology

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
    "SITE_REQUEST_CASES",
    "Replay",
    "RequestCase",
    "SiteRequestCase",
    "load_site_request_case",
    "render_site_request_goldens",
    "site_request_paths",
    "write_site_request_goldens",
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


# ------------------------------------------------------------------ site requests
#
# ``fixtures/site-requests/<case>.json`` -> ``fixtures/expected/<site>/<case>.fhir.json`` and ``.hl7``.
# A case names a journey (``fixtures/events/<journey>.json``) and site requests on it: each request says
# after which journey event it arrives (``after``), its state and times, and the events its decision
# recorded (``then``, e.g. ``order.cancelled`` for an applied cancel), so the answer is rendered against
# the order as it then stands.  The expected output per request is ``translate_site_request`` at
# GOLDEN_NOW: the resources (the request Task; the ServiceRequest for ``order_number``), the mapping
# issues and the answer's control id in ``.fhir.json``, the answer's segments in ``.hl7``.
# ``site_order_number`` adds the messages of the named journey events rendered once the site told us its
# order number (ORC-3 / OBR-3 carry it), and the order's ServiceRequest at the first of them.
# The lifecycle replay is passed in (``Replay``); ``main`` wires it.

SITE_REQUEST_CASES: tuple[str, ...] = ("site-requests",)

#: The lifecycle replay: (journey case, events) -> (snapshot, record) of every accepted event.
Replay = Callable[[Case, Sequence[EventIn]], list[tuple[OrderSnapshot, EventRecord]]]


@dataclass(frozen=True)
class RequestCase:
    raw: dict[str, Any]  # the request as in the case file (SiteRequestView fields, without the order's)
    after: str
    then: tuple[EventIn, ...]

    def view(self, snapshot: OrderSnapshot) -> SiteRequestView:
        raw = self.raw
        return SiteRequestView(
            request_id=raw["request_id"],
            order_id=snapshot.order.order_id,
            site_id=snapshot.site.id,
            manufacturer_id=snapshot.manufacturer.id,
            kind=raw["kind"],
            state=raw["state"],
            channel=raw["channel"],
            received_at=datetime.fromisoformat(raw["received_at"]),
            requested=dict(raw.get("requested", {})),
            reason=raw.get("reason"),
            decision_reason=raw.get("decision_reason"),
            decided_at=datetime.fromisoformat(raw["decided_at"]) if raw.get("decided_at") else None,
        )


@dataclass(frozen=True)
class SiteRequestCase:
    name: str
    description: str
    journey: Case
    requests: tuple[RequestCase, ...]
    site_order_number: str | None
    numbered_events: tuple[str, ...]

    def for_site(self, site_id: str) -> SiteRequestCase:
        return SiteRequestCase(self.name, self.description, self.journey.for_site(site_id), self.requests,
                               self.site_order_number, self.numbered_events)


def load_site_request_case(path: str | Path, root: Path = FIXTURES) -> SiteRequestCase:
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    requests = tuple(
        RequestCase(
            raw={k: v for k, v in item.items() if k not in ("after", "then")},
            after=item["after"],
            then=tuple(EventIn.model_validate(e) for e in item.get("then", [])),
        )
        for item in raw["requests"]
    )
    number = raw.get("site_order_number") or {}
    return SiteRequestCase(
        name=Path(path).name.removesuffix(".json"),
        description=raw.get("description", ""),
        journey=load_case(root / "events" / f"{raw['journey']}.json"),
        requests=requests,
        site_order_number=number.get("number"),
        numbered_events=tuple(number.get("events", [])),
    )


def _events_until(journey: Case, event_id: str) -> list[EventIn]:
    ids = [e.event_id for e in journey.events]
    if event_id not in ids:
        raise ValueError(f"the journey has no event {event_id!r}")
    return list(journey.events[: ids.index(event_id) + 1])


def _segments(message: Hl7Message) -> list[str]:
    return [s for s in message.er7.split("\r") if s]


def render_site_request_goldens(case: SiteRequestCase, profile: SiteProfile, terminology: Terminology,
                                replay: Replay) -> tuple[list[dict[str, Any]], str]:
    """(``.fhir.json`` content, ``.hl7`` content) of ``case`` for the site of ``profile``."""
    fhir: list[dict[str, Any]] = []
    hl7: list[str] = []
    for item in case.requests:
        events = [*_events_until(case.journey, item.after), *item.then]
        steps = replay(case.journey, events)
        if len(steps) != len(events) + 1:  # order.placed + every event accepted
            raise ValueError(f"{item.raw['request_id']}: the lifecycle refused an event of the case")
        snapshot = steps[-1][0]
        request = item.view(snapshot)
        translation = translate_site_request(snapshot, request, profile, terminology, GOLDEN_NOW)
        fhir.append({
            "request_id": request.request_id, "kind": request.kind, "state": request.state,
            "after": item.after, "then": [e.event_id for e in item.then],
            "resources": list(translation.resources),
            "messages": [{"message_type": m.message_type, "control_id": m.control_id, "refused": m.refused}
                         for m in translation.messages],
            "issues": [issue_json(i) for i in translation.issues],
        })
        hl7.append(f"# {request.request_id} {request.kind} {request.state}")
        for message in translation.messages:
            hl7.extend([*_segments(message), ""])
    if case.site_order_number and case.numbered_events:
        last = max(case.numbered_events, key=[e.event_id for e in case.journey.events].index)
        steps = replay(case.journey, _events_until(case.journey, last))
        numbered = [(s.model_copy(update={"site_order_number": case.site_order_number}), r)
                    for s, r in steps if r.event_id in case.numbered_events]
        first_snapshot, first_record = numbered[0]
        order = translate(first_snapshot, first_record, profile, terminology, GOLDEN_NOW)
        fhir.append({
            "site_order_number": case.site_order_number, "event_id": first_record.event_id,
            "resources": [r for r in order.resources if r["resourceType"] == "ServiceRequest"],
        })
        for snapshot, record in numbered:
            messages, _ = render_messages(snapshot, record, profile, terminology, GOLDEN_NOW)
            hl7.append(f"# site order number {case.site_order_number}: {record.event_id} {record.type.value}")
            for message in messages:
                hl7.extend([*_segments(message), ""])
    return fhir, "\n".join(hl7) + "\n"


def site_request_paths(site_id: str, case: str, root: Path = FIXTURES) -> tuple[Path, Path]:
    base = root / "expected" / site_id
    return base / f"{case}.fhir.json", base / f"{case}.hl7"


def write_site_request_goldens(sites: Sequence[str], profile_of: Callable[[str], SiteProfile],
                               terminology: Terminology, replay: Replay, root: Path = FIXTURES) -> list[Path]:
    """Write every site-request case for every demo site; returns the files written."""
    written = []
    for site_id in sites:
        for name in SITE_REQUEST_CASES:
            case = load_site_request_case(root / "site-requests" / f"{name}.json", root).for_site(site_id)
            fhir, hl7 = render_site_request_goldens(case, profile_of(site_id), terminology, replay)
            fhir_path, hl7_path = site_request_paths(site_id, name, root)
            fhir_path.parent.mkdir(parents=True, exist_ok=True)
            fhir_path.write_text(json.dumps(fhir, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            hl7_path.write_text(hl7, encoding="utf-8")
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
