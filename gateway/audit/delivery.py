"""Audit records of outbox delivery attempts, appended in the attempt's own transaction.

:func:`delivery_recorder` gives the delivery worker's ``on_attempt`` hook (called by
:class:`gateway.delivery.store.DeliveryStore` after it records an attempt, before it commits): one
record per attempt, ``execute`` ``outbox.deliver``, by the gateway itself (role ``system``), the
destination (``site-a/mllp``) as source, outcome ``success`` (delivered), ``retry`` or ``dead``.
The order's patient is read once per order (an indexed read of the order row) and remembered.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.audit.chain import append
from gateway.audit.patients import event_reference, order_reference, patient_reference
from gateway.audit.records import SYSTEM_ACTOR, AuditEntry
from gateway.store.search_params import to_us
from gateway.store.tables import OrderRow
from mappings.profile.schema import SiteProfile

__all__ = ["delivery_recorder", "AttemptHook"]

AttemptHook = Callable[[Connection, Any, Any, datetime], None]  # (connection, message, outcome, now)
_ORDERS: sa.Table = OrderRow.__table__  # type: ignore[attr-defined]
_ORDER_PATIENT = sa.select(_ORDERS.c.body).where(_ORDERS.c.manufacturer_id == sa.bindparam("m"),
                                                 _ORDERS.c.order_id == sa.bindparam("o"))
_CACHED = 4096


def delivery_recorder(profiles: Mapping[str, SiteProfile]) -> AttemptHook:
    """The hook that appends one audit record per delivery attempt (see the module docstring)."""
    patients: OrderedDict[tuple[str, str, str], str | None] = OrderedDict()

    def patient_of(conn: Connection, manufacturer_id: str, site_id: str, order_id: str) -> str | None:
        key = (manufacturer_id, site_id, order_id)
        if key in patients:
            patients.move_to_end(key)
            return patients[key]
        body = conn.execute(_ORDER_PATIENT, {"m": manufacturer_id, "o": order_id}).scalar()
        patient = body.get("patient") if isinstance(body, dict) else None
        mrn = str(patient.get("mrn", "")) if isinstance(patient, dict) else ""
        found = patient_reference(profiles, manufacturer_id, site_id, mrn) if mrn else None
        patients[key] = found
        if len(patients) > _CACHED:
            patients.popitem(last=False)
        return found

    def record(conn: Connection, message: Any, outcome: Any, now: datetime) -> None:
        patient = patient_of(conn, message.manufacturer_id, message.site_id, message.order_id)
        status = "success" if outcome.status == "delivered" else str(outcome.status)
        entities = [f"outbox:{message.id}", order_reference(message.manufacturer_id, message.order_id)]
        if message.event_id:
            entities.append(event_reference(message.manufacturer_id, message.event_id))
        append(conn, [AuditEntry.of(SYSTEM_ACTOR, to_us(now), "execute", "outbox.deliver", entities=entities,
                                    patients=[patient] if patient else [], outcome=status,
                                    source=message.destination)])

    return record
