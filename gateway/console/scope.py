"""The console's tenant rules, the API's: a site sees its own orders, a manufacturer its own, admin all."""

from __future__ import annotations

from typing import Any

from sqlmodel import col

from gateway.auth import Principal
from gateway.delivery.outbox import OutboxMessage
from gateway.store.tables import OrderRow

__all__ = ["order_filters", "may_see_order", "may_see_message", "may_read_payload"]


def order_filters(principal: Principal) -> list[Any]:
    """SQL conditions on ``cgt_order`` limiting it to what ``principal`` may see."""
    if principal.role == "manufacturer":
        return [col(OrderRow.manufacturer_id) == principal.subject]
    if principal.role == "site":
        return [col(OrderRow.site_id) == principal.subject]
    return []


def may_see_order(principal: Principal, row: OrderRow) -> bool:
    if principal.role == "manufacturer":
        return row.manufacturer_id == principal.subject
    if principal.role == "site":
        return row.site_id == principal.subject
    return principal.is_admin


def may_see_message(principal: Principal, message: OutboxMessage) -> bool:
    """A site sees what went to its own endpoints; a manufacturer what concerns its orders; admin all."""
    if principal.role == "site":
        return message.site_id == principal.subject and message.channel in ("mllp", "fhir")
    if principal.role == "manufacturer":
        return message.manufacturer_id == principal.subject
    return principal.is_admin


def may_read_payload(principal: Principal, message: OutboxMessage) -> bool:
    """The message itself: admin, the site it went to, the manufacturer for its own webhook only
    (the API shows outbox payloads to admin alone; a site reads what it was sent)."""
    if principal.role == "manufacturer":
        return message.channel == "webhook" and message.manufacturer_id == principal.subject
    return may_see_message(principal, message)
