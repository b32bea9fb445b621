"""What happens to an accepted event inside its transaction: translate, persist, enqueue.

Called by ``gateway.intake`` right after the event row and the order state are written, in the
same database transaction, so an event, its FHIR resource versions and its outbox rows commit
together or not at all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mappings.domain import EventRecord, OrderSnapshot
from mappings.result import Translation

__all__ = ["process_event"]


def process_event(session: Any, snapshot: OrderSnapshot, record: EventRecord, context: Any,
                  now: datetime) -> Translation | None:
    """Translate ``record`` for the order's site and persist the outputs (wired as parts land)."""
    return None
