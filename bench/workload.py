"""The benchmark's workload: many distinct orders built from the fixture journeys.

Each order ``n`` is a fixture journey (``fixtures/events/journey-*.json``) with its own order id,
ISBT 128 CoI, MRN, DIN and lots, so nothing repeats across orders that would not repeat in
production (the site and manufacturer Organizations and the Practitioner do).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from terminology.isbt128 import check_character

__all__ = ["FIXTURES", "JourneyBodies", "coi", "din", "journey", "journey_bodies", "loadgen_journeys",
           "translation_steps"]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CASES = ("journey-autologous", "journey-cancelled")
SITES = ("site-a", "site-b")


def coi(n: int) -> str:
    """A distinct valid ISBT 128 CoI (facility A9999, year 27) with its check character."""
    data = f"CHA999927{n:06d}"
    return data + check_character(data)


def din(n: int) -> str:
    """A distinct DIN (13 characters; the gateway adds the check character)."""
    return f"A999927{n:06d}"


def _raw(case: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "events" / f"{case}.json").read_text(encoding="utf-8"))


_RAW: dict[str, dict[str, Any]] = {}


def journey(
    n: int, case: str = "journey-autologous", site_id: str = "site-a", prefix: str = "BENCH"
) -> dict[str, Any]:
    """Fixture ``case`` as order number ``n`` for ``site_id``: ``{placed_at, order, events}``."""
    if case not in _RAW:
        _RAW[case] = _raw(case)
    raw = copy.deepcopy(_RAW[case])
    order = raw["order"]
    order_coi = coi(n) if order["product_code"] == "CART-CD19" else f"NC-{n:06d}"  # GT-HEM-01's pattern
    order.update(order_id=f"{prefix}-{n:07d}", coi=order_coi, site_id=site_id)
    order["patient"]["mrn"] = f"MRN-{n:07d}"
    for event in raw["events"]:
        event["coi"] = order_coi
        event["event_id"] = f"{order['order_id']}-{event['event_id']}"
        data = event["data"]
        if "din" in data:
            data["din"] = din(n)
        if "lot" in data:
            data["lot"] = f"{data['lot']}-{n}"
    return {"placed_at": raw["placed_at"], "order": order, "events": raw["events"]}


@dataclass(frozen=True)
class JourneyBodies:
    """What a manufacturer posts for one order: the order body, then each event body in turn."""

    order_id: str
    order: dict[str, Any]
    events: tuple[dict[str, Any], ...]


def journey_bodies(n: int, site_id: str = "site-a", prefix: str = "BENCH") -> JourneyBodies:
    """The full autologous journey (every event is accepted) as order ``n``."""
    raw = journey(n, "journey-autologous", site_id, prefix)
    return JourneyBodies(raw["order"]["order_id"], raw["order"], tuple(raw["events"]))


def translation_steps(orders: int, start: int = 0) -> list[tuple[Any, Any, str]]:
    """``(snapshot, record, site_id)`` of every accepted event of ``orders`` distinct orders,
    alternating sites and the two fixture journeys (the lifecycle replay is not timed)."""
    from gateway.config import load_settings
    from gateway.intake.replay import replay_journey
    from mappings.events import EventIn
    from mappings.orders import OrderIn

    settings = load_settings()
    steps = []
    for i in range(start, start + orders):
        site_id = SITES[i % 2]
        case = CASES[(i // 2) % 2]
        raw = journey(i, case, site_id, prefix="TRANSLATE")
        for step in replay_journey(
            settings,
            OrderIn.model_validate(raw["order"]),
            [EventIn.model_validate(e) for e in raw["events"]],
            placed_at=datetime.fromisoformat(raw["placed_at"]),
        ):
            if step.snapshot is not None:
                steps.append((step.snapshot, step.record, site_id))
    return steps


def loadgen_journeys(first: int, count: int, prefix: str) -> list[dict[str, Any]]:
    """``count`` journeys numbered from ``first``, alternating site-a and site-b, as the load generator's
    ``journeys`` specs take them (the order and its events, per journey)."""
    out = []
    for n in range(first, first + count):
        bodies = journey_bodies(n, "site-a" if n % 2 == 0 else "site-b", prefix)
        out.append({"order_id": bodies.order_id, "order": bodies.order, "events": list(bodies.events)})
    return out
