"""The pure milestone rules (mappings.milestones) and the alert Flag builder (mappings.fhir.alert)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from mappings.domain import EventType, OrderStatus
from mappings.events import EventRecord
from mappings.fhir.alert import build_alert_flag, flag_id
from mappings.milestones import Milestones, certification_conditions, order_conditions

ROOT = Path(__file__).resolve().parents[2]
MILESTONES = Milestones.model_validate(
    {
        "transit_hours_max": 72,
        "apheresis_to_receipt_hours_max": 48,
        "expiry_warning_days": 14,
        "temperature_c": {
            "collected_material": {"min": 1, "max": 10},
            "final_product": {"min": -196, "max": -120},
        },
    }
)
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def rec(seq: int, type_: str, hours: float, **data: Any) -> EventRecord:
    at = T0 + timedelta(hours=hours)
    return EventRecord(
        event_id=f"e{seq}",
        type=EventType(type_),
        occurred_at=at,
        coi="C",
        data=data,
        sequence=seq,
        accepted_at=at,
        status_after=OrderStatus.placed,
    )


def kinds(events: list[EventRecord], hours: float, status: str = "collected") -> list[tuple[str, str]]:
    return [
        (c.kind, c.key) for c in order_conditions(events, status, MILESTONES, T0 + timedelta(hours=hours))
    ]


def test_collected_material_overdue_until_received_at_manufacturing():
    events = [rec(1, "collection.completed", 0, collected_at=T0.isoformat())]
    assert kinds(events, 48) == []
    assert kinds(events, 48.01) == [("shipment-overdue", "apheresis:e1")]
    courier = rec(2, "custody.transferred", 1, from_party="Site", to_party="Courier", at=T0.isoformat())
    assert kinds([*events, courier], 49) == [("shipment-overdue", "apheresis:e1")]
    plant = rec(
        3,
        "custody.transferred",
        30,
        from_party="Courier",
        to_party="Acme MANUFACTURING site",
        at=T0.isoformat(),
    )
    assert kinds([*events, courier, plant], 49) == []
    assert kinds([*events, rec(2, "manufacturing.started", 47)], 49) == []


def test_shipment_overdue_and_temperature_phases():
    made = rec(1, "manufacturing.completed", 0, lot="L", expires_at=(T0 + timedelta(days=100)).isoformat())
    sent = rec(2, "shipment.dispatched", 1)
    assert kinds([made, sent], 73) == []
    assert kinds([made, sent], 73.01) == [("shipment-overdue", "shipment:e2")]
    got = rec(3, "shipment.received", 74, received_at=T0.isoformat(), temperature_c=-100)
    assert kinds([made, sent, got], 75) == [("temperature-excursion", "temperature:e3")]
    cold = rec(
        0, "custody.transferred", -5, from_party="a", to_party="b", at=T0.isoformat(), temperature_c=-150
    )
    assert kinds([cold, made], 0) == [("temperature-excursion", "temperature:e0")]  # too cold for fresh cells
    assert (
        kinds([made, rec(3, "shipment.received", 2, received_at=T0.isoformat(), temperature_c=-196)], 3) == []
    )


def test_expiry_release_failed_and_finished_orders():
    made = rec(1, "manufacturing.completed", 0, lot="L", expires_at=(T0 + timedelta(days=20)).isoformat())
    assert kinds([made], 24 * 6 - 0.1) == []
    assert kinds([made], 24 * 6) == [
        ("expiry-approaching", f"expiry:{(T0 + timedelta(days=20)).isoformat()}".replace("+00:00", "Z"))
    ]
    assert kinds([made, rec(2, "infusion.scheduled", 1, start=T0.isoformat())], 24 * 7) == []
    failed = rec(3, "release.failed", 1, reason="low", disposition="not_releasable")
    [condition] = order_conditions([failed], "failed", MILESTONES, T0)
    assert condition.detail["disposition"] == "not_releasable"
    assert kinds([failed, rec(4, "release.passed", 2)], 3) == []
    assert kinds([failed], 3, status="cancelled") == [] and kinds([failed], 3, status="infused") == []
    assert order_conditions([failed], "failed", None, T0) == []


def test_certification_expiring_30_days_before():
    until = date(2026, 7, 31)
    assert certification_conditions("certified", until, date(2026, 6, 30)) == []
    [c] = certification_conditions("certified", until, date(2026, 7, 1))
    assert c.key == "valid_until:2026-07-31"
    assert certification_conditions("suspended", until, date(2026, 7, 30)) == []


def test_milestones_refuse_an_inverted_range():
    with pytest.raises(ValidationError, match="min must not be above max"):
        Milestones.model_validate({"temperature_c": {"final_product": {"min": -120, "max": -196}}})


def test_the_flag_matches_its_golden_and_validates():
    flag = build_alert_flag(
        alert_id="3f0c8a4e-1111-5222-8333-444455556666",
        kind="temperature-excursion",
        state="resolved",
        manufacturer_id="acme-bio",
        order_id="ACME-ORD-1001",
        patient_id="0d1b2a5c-0000-5000-8000-000000000001",
        raised_at=datetime(2026, 3, 12, 18, 1, tzinfo=UTC),
        resolved_at=datetime(2026, 4, 22, 14, 31, tzinfo=UTC),
    )
    golden = ROOT / "fixtures/expected/alerts/flag-temperature-excursion-resolved.fhir.json"
    assert flag == json.loads(golden.read_text())
    model = get_fhir_model_class("Flag").model_validate(flag)
    assert get_fhir_model_class("Flag").model_validate(model.model_dump(mode="json"))
    assert flag["id"] == flag_id("3f0c8a4e-1111-5222-8333-444455556666") and flag["status"] == "inactive"
    active = build_alert_flag(
        alert_id="a",
        kind="release-failed",
        state="acknowledged",
        manufacturer_id="m",
        order_id="o",
        patient_id="p",
        raised_at=T0,
        resolved_at=None,
    )
    assert active["status"] == "active" and "end" not in active["period"]
    with pytest.raises(ValueError):
        build_alert_flag(
            alert_id="a",
            kind="nope",
            state="open",
            manufacturer_id="m",
            order_id="o",
            patient_id="p",
            raised_at=T0,
            resolved_at=None,
        )
