"""What an order's accepted events say so far: products, lots, schedule, and every resource id.

:class:`Journey` is computed from the snapshot's events up to (and including) the event being
translated, so translating an event always sees the same history.  Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mappings.domain import EventType
from mappings.event_data import typed_data
from mappings.events import CollectionCompletedData, EventRecord
from mappings.ids import (
    MANUFACTURER_SYSTEM,
    NPI_SYSTEM,
    SITE_SYSTEM,
    coi_system,
    event_system,
    lot_system,
    order_system,
    party_system,
    product_system,
    reference,
    resource_id,
)
from mappings.profile.schema import SiteProfile
from mappings.result import MappingIssue
from mappings.snapshot import OrderSnapshot
from terminology.isbt128 import normalize_din

__all__ = ["Collection", "Lot", "Journey"]


@dataclass(frozen=True)
class Collection:
    """One collection.completed event: the collected (starting) material."""

    event: EventRecord
    collected_at: datetime
    din: str | None
    product_id: str


@dataclass(frozen=True)
class Lot:
    """One manufactured lot: the final product made from the collected material."""

    lot: str
    product_id: str
    first_sequence: int
    completed: EventRecord | None = None  # manufacturing.completed for this lot
    release: EventRecord | None = None  # the release.passed / release.failed that judged it


class Journey:
    """Ids, references and facts for one order, as of one event."""

    def __init__(self, snapshot: OrderSnapshot, event: EventRecord, profile: SiteProfile) -> None:
        self.snapshot = snapshot
        self.event = event
        self.profile = profile
        order = snapshot.order
        mid = snapshot.manufacturer.id
        history = [e for e in snapshot.events if e.sequence < event.sequence]
        self.history: tuple[EventRecord, ...] = (*history, event)

        self.order_system = order_system(mid)
        self.event_system = event_system(mid, order.order_id)
        self.service_request_id = resource_id("ServiceRequest", self.order_system, order.order_id)
        self.task_id = resource_id("Task", self.order_system, order.order_id)
        site = snapshot.site.id
        self.patient_id = resource_id(
            "Patient", party_system(site, mid, profile.patient.mrn_system), order.patient.mrn
        )
        self.practitioner_id = resource_id(
            "Practitioner", party_system(site, mid, NPI_SYSTEM), order.ordering_provider.npi
        )
        self.manufacturer_org_id = resource_id(
            "Organization", party_system(site, mid, MANUFACTURER_SYSTEM), mid
        )
        self.site_org_id = resource_id("Organization", party_system(site, mid, SITE_SYSTEM), site)
        self.coi_identifier: dict[str, Any] = {
            "system": coi_system(mid, snapshot.product.coi_format),
            "value": snapshot.coi,
        }
        self.lot_system = lot_system(mid)  # the lot identifier's system (per manufacturer)
        # products are keyed within the order: a DIN or lot seen on another order is another product
        self.din_product_system = product_system(mid, order.order_id, "din")
        self.lot_product_system = product_system(mid, order.order_id, "lot")

        self.issues: list[MappingIssue] = []
        self.collections = self._collections()
        self.lots = self._lots(include_late=True)
        # What the Task shows comes from events that are not late: a late event never changes the Task.
        self.task_lots = self._lots(include_late=False)

    # ------------------------------------------------------------------ references

    @property
    def service_request_ref(self) -> dict[str, str]:
        return reference("ServiceRequest", self.service_request_id)

    @property
    def patient_ref(self) -> dict[str, str]:
        return reference("Patient", self.patient_id)

    @property
    def practitioner_ref(self) -> dict[str, str]:
        provider = self.snapshot.order.ordering_provider
        return reference(
            "Practitioner", self.practitioner_id, f"{' '.join(provider.given)} {provider.family}"
        )

    @property
    def manufacturer_ref(self) -> dict[str, str]:
        return reference("Organization", self.manufacturer_org_id, self.snapshot.manufacturer.name)

    @property
    def site_ref(self) -> dict[str, str]:
        return reference("Organization", self.site_org_id, self.profile.name)

    def event_resource_id(self, resource_type: str, suffix: str = "") -> str:
        """Id of a resource born from the translated event (an Observation, a Provenance)."""
        return resource_id(resource_type, self.event_system, self.event.event_id + suffix)

    # ------------------------------------------------------------------ facts

    def latest(self, *types: EventType, include_late: bool = True) -> EventRecord | None:
        for record in reversed(self.history):
            if record.type in types and (include_late or not record.late):
                return record
        return None

    def first(self, *types: EventType, include_late: bool = True) -> EventRecord | None:
        return next((r for r in self.history if r.type in types and (include_late or not r.late)), None)

    def _collections(self) -> tuple[Collection, ...]:
        found = []
        for record in self.history:
            if record.type is not EventType.collection_completed:
                continue
            data = typed_data(record)
            if not isinstance(data, CollectionCompletedData):
                continue
            din = self._din(data.din, record) if data.din else None
            key_system, key = (self.din_product_system, din) if din else (self.event_system, record.event_id)
            found.append(
                Collection(
                    event=record,
                    collected_at=data.collected_at,
                    din=din,
                    product_id=resource_id("BiologicallyDerivedProduct", key_system, key),
                )
            )
        return tuple(found)

    def _din(self, raw: str, record: EventRecord) -> str:
        try:
            return normalize_din(raw)
        except ValueError as exc:
            if record.sequence == self.event.sequence:
                self.issues.append(
                    MappingIssue(
                        "warning",
                        "invalid-din",
                        "event.data.din",
                        f"DIN is not ISBT 128 ({exc}); sent as given",
                    )
                )
            return raw

    def _lots(self, *, include_late: bool) -> tuple[Lot, ...]:
        # lot -> [first sequence, completed, release]; the Lots are built once at the end
        lots: dict[str, list[Any]] = {}
        current: str | None = None
        for record in self.history:
            if record.late and not include_late:
                continue
            if record.type in (EventType.manufacturing_started, EventType.manufacturing_completed):
                lot = record.data.get("lot")
                if not lot:
                    continue
                current = str(lot)
                if current not in lots:
                    lots[current] = [record.sequence, None, None]
                if record.type is EventType.manufacturing_completed:
                    lots[current][1] = record
            elif record.type in (EventType.release_passed, EventType.release_failed) and current:
                lots[current][2] = record
        product = "BiologicallyDerivedProduct"
        return tuple(
            Lot(lot, resource_id(product, self.lot_product_system, lot), first, completed, release)
            for lot, (first, completed, release) in lots.items()
        )

    @property
    def current_lot(self) -> Lot | None:
        return self.lots[-1] if self.lots else None

    @property
    def task_lot(self) -> Lot | None:
        return self.task_lots[-1] if self.task_lots else None

    def lot_at(self, record: EventRecord) -> Lot | None:
        """The lot a release result belongs to: the latest lot begun before ``record``."""
        before = [lot for lot in self.lots if lot.first_sequence < record.sequence]
        return before[-1] if before else self.current_lot

    def product_in_custody(self, at: datetime) -> str | None:
        """Id of the product handled at ``at``: the final product once made, else the collected material."""
        made = [lot for lot in self.lots if lot.completed is not None and lot.completed.occurred_at <= at]
        if made:
            return made[-1].product_id
        collected = [c for c in self.collections if c.collected_at <= at]
        if collected:
            return collected[-1].product_id
        if self.current_lot is not None:
            return self.current_lot.product_id
        return self.collections[-1].product_id if self.collections else None
