"""The event -> order-control table and every code the renderer emits are in their HL7 tables."""

from __future__ import annotations

import hl7apy
import pytest

from mappings.domain import EventType, OrderStatus
from mappings.hl7v2.event_map import (
    DISPENSE_STATUS_BY_EVENT,
    ORDER_CONTROL_BY_EVENT,
    ORDER_CONTROL_FAILED,
    ORDER_CONTROL_PRODUCT_STATUS,
    ORDER_CONTROL_RESULTS,
    ORDER_STATUS_BY_STATUS,
    TRANSFUSION_STATUS_BY_EVENT,
    order_control,
    order_status,
)
from mappings.hl7v2.render import SEX_CODES
from mappings.hl7v2.scheduling import FILLER_STATUS_BY_TRIGGER
from mappings.hl7v2.segments import COMMENT_TYPES, PRIORITY_CODES
from terminology.hl7_tables import load_hl7_tables

TABLES = load_hl7_tables()


def test_every_event_and_status_is_mapped() -> None:
    assert set(ORDER_CONTROL_BY_EVENT) == set(EventType)
    assert set(ORDER_STATUS_BY_STATUS) == set(OrderStatus)


def test_mapped_codes_are_in_their_tables() -> None:
    controls = {
        *ORDER_CONTROL_BY_EVENT.values(),
        ORDER_CONTROL_FAILED,
        ORDER_CONTROL_RESULTS,
        ORDER_CONTROL_PRODUCT_STATUS,
    }
    assert all(TABLES.contains("0119", c) for c in controls)
    assert all(TABLES.contains("0038", s) for s in ORDER_STATUS_BY_STATUS.values())
    assert all(TABLES.contains("0510", s) for s in DISPENSE_STATUS_BY_EVENT.values())
    assert all(TABLES.contains("0513", s) for s in TRANSFUSION_STATUS_BY_EVENT.values())
    assert all(TABLES.contains("0278", s) for s in FILLER_STATUS_BY_TRIGGER.values())
    assert all(TABLES.contains("0485", s) for s in PRIORITY_CODES.values())
    assert all(TABLES.contains("0001", s) for s in SEX_CODES.values())
    assert all(TABLES.contains("0364", s.split("^")[0]) for s in COMMENT_TYPES.values())


@pytest.mark.parametrize(
    ("event_type", "status_after", "control", "status"),
    [
        (EventType.order_placed, OrderStatus.placed, "NW", ""),
        (EventType.order_confirmed, OrderStatus.confirmed, "SC", "SC"),
        (EventType.manufacturing_started, OrderStatus.manufacturing, "SC", "IP"),
        (EventType.product_infused, OrderStatus.infused, "SC", "CM"),
        (EventType.order_on_hold, OrderStatus.on_hold, "HD", "HD"),
        (EventType.order_resumed, OrderStatus.manufacturing, "RL", "IP"),
        (EventType.order_cancelled, OrderStatus.cancelled, "OC", "CA"),
        (EventType.release_failed, OrderStatus.failed, "OD", "DC"),
        (EventType.release_failed, OrderStatus.manufacturing, "SC", "IP"),  # remanufacture
    ],
)
def test_order_control_and_status(
    event_type: EventType, status_after: OrderStatus, control: str, status: str
) -> None:
    assert (order_control(event_type, status_after), order_status(event_type, status_after)) == (
        control,
        status,
    )


def test_tables_lookups_and_coding_systems() -> None:
    assert TABLES.display("0119", "NW") == "New order/service"
    assert TABLES.contains("0085", "F") and not TABLES.contains("0085", "Z")
    assert "_name" not in TABLES.table("0038")
    with pytest.raises(KeyError):
        TABLES.table("9999")
    assert TABLES.coding_system("http://loinc.org") == "LN"
    assert TABLES.coding_system("urn:oid:2.16.840.1.113883.19.2.20") == "L"


def test_our_tables_agree_with_hl7apys_copy_of_the_2_5_1_tables() -> None:
    """An independent source: every code we hold is in hl7apy's 2.5.1 table of the same number,
    except local ``99...`` codes and the 0396 coding systems SCT and UCUM (named by later versions and
    the 2.5.1 lab implementation guides)."""
    allowed_extra = {("0396", "SCT"), ("0396", "UCUM")}
    for number, codes in TABLES.tables.items():
        reference = hl7apy.load_reference(f"HL7{number}", "Table", "2.5.1")[1]
        extra = {c for c in codes if c not in reference and not c.startswith("99")}
        assert {(number, c) for c in extra} <= allowed_extra, number
