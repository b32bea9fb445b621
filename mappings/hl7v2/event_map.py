"""Which HL7v2 messages each event produces, and the order-control / order-status codes: data.

Every event sends the site's order message (``OML^O21`` or ``ORM^O01``) with one ORC:

==========================  ======  ===================================================
event                       ORC-1   also (when the profile turns it on)
==========================  ======  ===================================================
order.placed                NW      (ORC-5 empty: a new order has no status yet)
order.confirmed             SC
apheresis.scheduled         SC      SIU^S12 apheresis appointment booked
apheresis.rescheduled       SC      SIU^S13 apheresis appointment rescheduled
collection.completed        SC      ORU^R01 with the collection measurements
custody.transferred         SC      (NTE with the handoff)
manufacturing.started       SC
manufacturing.completed     SC
release.passed              SC      ORU^R01 with the release results
release.failed              SC/OD   ORU^R01 with OBX-8 flags; OD (discontinued) when the
                                    order failed (disposition not_releasable)
shipment.dispatched         SC
shipment.received           SC      BPS^O29, BPX-2 = RI (received into inventory)
infusion.scheduled          SC      SIU^S12 infusion appointment booked
product.infused             SC      BTS^O31, BTX-11 = TX (transfused)
order.on_hold               HD
order.resumed               RL
order.cancelled             OC      SIU^S15 for every appointment still pending
==========================  ======  ===================================================

ORC-5 (table 0038) follows the order's status after the event (:data:`ORDER_STATUS_BY_STATUS`):
scheduled stages are ``SC``, work in progress ``IP``, infused ``CM``, on hold ``HD``, cancelled
``CA``, failed ``DC``.  ORU^R01's ORC-1 is ``RE`` (observations to follow); BPS/BTS use ``SC``.
ORC-16 carries one kind of value in every ORC of every message: the order's business status after
the event, coded ``code^text^system`` (CE; our business-status CodeSystem, coding system ``99CGT``, or
the site's ``business_status.overrides`` code); free-text reasons and event details go to NTE (NTE-4
``1R``/``RE`` from 2.4 on).
A late event (a stage behind the order) still sends its order message, but never an SIU.
"""

from __future__ import annotations

from typing import Final, Literal

from mappings.domain import EventType, OrderStatus

__all__ = [
    "ORDER_CONTROL_BY_EVENT",
    "ORDER_STATUS_BY_STATUS",
    "ORDER_CONTROL_FAILED",
    "ORDER_CONTROL_RESULTS",
    "ORDER_CONTROL_PRODUCT_STATUS",
    "SCHEDULING_BY_EVENT",
    "DISPENSE_STATUS_BY_EVENT",
    "TRANSFUSION_STATUS_BY_EVENT",
    "Appointment",
    "order_control",
    "order_status",
]

Appointment = Literal["apheresis", "infusion"]

#: ORC-1 (table 0119) of the order message, per event.
ORDER_CONTROL_BY_EVENT: Final[dict[EventType, str]] = {
    EventType.order_placed: "NW",
    EventType.order_confirmed: "SC",
    EventType.apheresis_scheduled: "SC",
    EventType.apheresis_rescheduled: "SC",
    EventType.collection_completed: "SC",
    EventType.custody_transferred: "SC",
    EventType.manufacturing_started: "SC",
    EventType.manufacturing_completed: "SC",
    EventType.release_passed: "SC",
    EventType.release_failed: "SC",
    EventType.shipment_dispatched: "SC",
    EventType.shipment_received: "SC",
    EventType.infusion_scheduled: "SC",
    EventType.product_infused: "SC",
    EventType.order_on_hold: "HD",
    EventType.order_resumed: "RL",
    EventType.order_cancelled: "OC",
}

ORDER_CONTROL_FAILED: Final = "OD"  # order/service discontinued (unsolicited): the order failed
ORDER_CONTROL_RESULTS: Final = "RE"  # ORU^R01: observations to follow
ORDER_CONTROL_PRODUCT_STATUS: Final = "SC"  # BPS^O29 / BTS^O31

#: ORC-5 (table 0038) for the order's status after the event.
ORDER_STATUS_BY_STATUS: Final[dict[OrderStatus, str]] = {
    OrderStatus.placed: "SC",
    OrderStatus.confirmed: "SC",
    OrderStatus.apheresis_scheduled: "SC",
    OrderStatus.collected: "IP",
    OrderStatus.manufacturing: "IP",
    OrderStatus.manufactured: "IP",
    OrderStatus.released: "IP",
    OrderStatus.shipped: "IP",
    OrderStatus.received: "IP",
    OrderStatus.infusion_scheduled: "SC",
    OrderStatus.infused: "CM",
    OrderStatus.on_hold: "HD",
    OrderStatus.cancelled: "CA",
    OrderStatus.failed: "DC",
}

#: SIU trigger per scheduling event: (appointment, trigger event).
SCHEDULING_BY_EVENT: Final[dict[EventType, tuple[Appointment, str]]] = {
    EventType.apheresis_scheduled: ("apheresis", "S12"),
    EventType.apheresis_rescheduled: ("apheresis", "S13"),
    EventType.infusion_scheduled: ("infusion", "S12"),
}

#: BPS^O29 BPX-2 (table 0510) per event.
DISPENSE_STATUS_BY_EVENT: Final[dict[EventType, str]] = {EventType.shipment_received: "RI"}

#: BTS^O31 BTX-11 (table 0513) per event.
TRANSFUSION_STATUS_BY_EVENT: Final[dict[EventType, str]] = {EventType.product_infused: "TX"}


def order_control(event_type: EventType, status_after: OrderStatus) -> str:
    """ORC-1 of the order message for an event that left the order in ``status_after``."""
    if status_after is OrderStatus.failed and event_type is EventType.release_failed:
        return ORDER_CONTROL_FAILED
    return ORDER_CONTROL_BY_EVENT[event_type]


def order_status(event_type: EventType, status_after: OrderStatus) -> str:
    """ORC-5 of the order message: empty for a new order, else by the status after the event."""
    if event_type is EventType.order_placed:
        return ""
    return ORDER_STATUS_BY_STATUS[status_after]
