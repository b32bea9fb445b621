"""What intake reads about an order inside its write transaction: the order row, locked, and the
history of accepted events a translation needs (:class:`mappings.domain.OrderSnapshot`).

Statements are SQLAlchemy Core, built once (no ORM identity map or unit of work on the ingest path).

**The history cache.**  Accepted events are never updated or deleted, and ``(order_pk, sequence)``
is unique, so an order's history only grows at its end.  Each process keeps the parsed history
(``OrderIn`` and ``EventRecord`` tuples) of the orders it wrote recently, per engine, in a bounded
LRU (:data:`HISTORY_CACHE`).  With the order row locked, intake asks the database only for the
events from the last cached sequence on: the cached last event must come back unchanged (same
``event_id`` at that sequence) and the rows after it are appended.  Anything else (another order
id or body, a shorter history, a changed last event) reads the whole history again.  So another
process writing the same order is seen on the next read, and a history is cached only after its
transaction committed (intake calls :meth:`HistoryCache.put` after the commit).

**Retracted events** (``gateway.intake.retraction``) are not part of the history: translation never sees
them.  A retraction changes the history in the middle (it removes an event and may recompute the
``late``/``status_after`` of the others), so it bumps ``cgt_order.history_revision``; a cached
history of another revision is read again in full.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.config import Settings
from gateway.errors import NotFound
from gateway.store.prepared_sql import fetch_rows
from gateway.store.tables import EventRow, OrderRow, as_utc
from mappings.domain import EventType, OrderStatus
from mappings.events import EventRecord
from mappings.orders import OrderIn
from mappings.snapshot import ManufacturerRef, OrderSnapshot, ProductRef, SiteRef

__all__ = [
    "LockedOrder",
    "History",
    "HistoryCache",
    "HISTORY_CACHE",
    "lock_order",
    "lock_existing_order",
    "lock_site_orders",
    "lock_order_pk",
    "load_history",
    "event_record",
    "build_snapshot",
]

_O: sa.Table = OrderRow.__table__  # type: ignore[attr-defined]
_E: sa.Table = EventRow.__table__  # type: ignore[attr-defined]

_ORDER_COLUMNS = (_O.c.id, _O.c.manufacturer_id, _O.c.order_id, _O.c.site_id, _O.c.product_code, _O.c.coi,
                  _O.c.status, _O.c.state, _O.c.body_sha256, _O.c.last_sequence, _O.c.created_at,
                  _O.c.history_revision, _O.c.site_order_number)
_FIND_ORDER = sa.select(*_ORDER_COLUMNS).where(_O.c.manufacturer_id == sa.bindparam("m"),
                                               _O.c.order_id == sa.bindparam("o"))
_LOCK_ORDER = _FIND_ORDER.with_for_update()  # PostgreSQL: the row stays locked until commit
# A site names an order by the id the gateway sent it (at most two rows: more than one is ambiguous).
_FIND_SITE_ORDER = (sa.select(*_ORDER_COLUMNS)
                    .where(_O.c.site_id == sa.bindparam("s"), _O.c.order_id == sa.bindparam("o"))
                    .order_by(_O.c.id).limit(2))
_LOCK_SITE_ORDER = _FIND_SITE_ORDER.with_for_update()
_FIND_ORDER_PK = sa.select(*_ORDER_COLUMNS).where(_O.c.id == sa.bindparam("pk"))
_LOCK_ORDER_PK = _FIND_ORDER_PK.with_for_update()
_ORDER_BODY = sa.select(_O.c.body).where(_O.c.id == sa.bindparam("pk"))
EVENT_COLUMNS = tuple(_E.c)  # every column: an EventRow can be rebuilt from a row
_EVENTS_FROM = sa.select(*EVENT_COLUMNS).where(
    _E.c.order_pk == sa.bindparam("pk"), _E.c.sequence >= sa.bindparam("first"),
    _E.c.retracted_at.is_(None)).order_by(_E.c.sequence)


@dataclass(frozen=True)
class LockedOrder:
    """The columns of ``cgt_order`` intake decides with (``body`` is read only when needed)."""

    pk: int
    manufacturer_id: str
    order_id: str
    site_id: str
    product_code: str
    coi: str
    status: str
    state: dict[str, Any]
    body_sha256: str
    last_sequence: int
    created_at: datetime
    history_revision: int = 0  # bumped by every retraction
    site_order_number: str | None = None  # the site's own order number (a site request, ORC-1 NA)


@dataclass(frozen=True)
class History:
    """An order's body and its accepted events in sequence order (``order.placed`` first)."""

    order_pk: int
    manufacturer_id: str
    order_id: str
    body_sha256: str
    order: OrderIn
    events: tuple[EventRecord, ...]  # never a retracted event
    history_revision: int = 0

    def appended(self, record: EventRecord) -> History:
        return History(self.order_pk, self.manufacturer_id, self.order_id, self.body_sha256, self.order,
                       (*self.events, record), self.history_revision)

    def same_order(self, order: LockedOrder) -> bool:
        return (self.order_pk, self.manufacturer_id, self.order_id, self.body_sha256,
                self.history_revision) == (order.pk, order.manufacturer_id, order.order_id,
                                           order.body_sha256, order.history_revision)


class HistoryCache:
    """Bounded LRU of committed histories, one per engine (thread-safe).  A whole journey's history
    (21 events) takes about 40 KiB, so the default bound keeps it to about 10 MiB: enough for the
    orders being written at the same time, which is where it saves work."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._by_engine: weakref.WeakKeyDictionary[Engine, OrderedDict[int, History]] = (
            weakref.WeakKeyDictionary())

    def get(self, engine: Engine, order_pk: int) -> History | None:
        with self._lock:
            entries = self._by_engine.get(engine)
            if entries is None or order_pk not in entries:
                return None
            entries.move_to_end(order_pk)
            return entries[order_pk]

    def put(self, engine: Engine, history: History) -> None:
        with self._lock:
            entries = self._by_engine.setdefault(engine, OrderedDict())
            entries[history.order_pk] = history
            entries.move_to_end(history.order_pk)
            while len(entries) > self.size:
                entries.popitem(last=False)


HISTORY_CACHE = HistoryCache()


def lock_order(conn: Connection, manufacturer_id: str, order_id: str) -> LockedOrder | None:
    """The order row, locked until commit on PostgreSQL (SQLite: the caller holds the write lock)."""
    stmt = _LOCK_ORDER if conn.dialect.name == "postgresql" else _FIND_ORDER
    rows = fetch_rows(conn, stmt, {"m": manufacturer_id, "o": order_id})
    if not rows:
        return None
    return _locked(rows[0])


def _locked(row: Any) -> LockedOrder:
    return LockedOrder(int(row.id), row.manufacturer_id, row.order_id, row.site_id, row.product_code, row.coi,
                       row.status, row.state, row.body_sha256, int(row.last_sequence), as_utc(row.created_at),
                       int(row.history_revision), row.site_order_number)


def lock_site_orders(conn: Connection, site_id: str, order_id: str) -> list[LockedOrder]:
    """The orders of ``site_id`` with ``order_id`` (at most two: two manufacturers may use one id at a
    site), locked until commit on PostgreSQL like :func:`lock_order`."""
    stmt = _LOCK_SITE_ORDER if conn.dialect.name == "postgresql" else _FIND_SITE_ORDER
    return [_locked(row) for row in fetch_rows(conn, stmt, {"s": site_id, "o": order_id})]


def lock_order_pk(conn: Connection, order_pk: int) -> LockedOrder:
    """The order with primary key ``order_pk`` (which must exist), locked like :func:`lock_order`."""
    stmt = _LOCK_ORDER_PK if conn.dialect.name == "postgresql" else _FIND_ORDER_PK
    return _locked(fetch_rows(conn, stmt, {"pk": order_pk})[0])


def lock_existing_order(conn: Connection, manufacturer_id: str, order_id: str) -> LockedOrder:
    """:func:`lock_order`, or ``404 not-found`` (another manufacturer's order is not found either)."""
    order = lock_order(conn, manufacturer_id, order_id)
    if order is None:
        raise NotFound(f"No order {order_id} for this manufacturer.")
    return order


def event_record(row: Any) -> EventRecord:
    """An :class:`EventRecord` from an ``order_event`` row (ORM object or Core row)."""
    return EventRecord(
        event_id=row.event_id,
        type=EventType(row.type),
        occurred_at=as_utc(row.occurred_at),
        coi=row.coi,
        data=row.data,
        sequence=row.sequence,
        accepted_at=as_utc(row.accepted_at),
        late=row.late,
        status_after=OrderStatus(row.status_after),
        source=getattr(row, "source", None) or "manufacturer",
    )


def load_history(conn: Connection, order: LockedOrder, cached: History | None = None) -> History:
    """Every accepted, not retracted event of ``order`` up to its ``last_sequence``; only the newer
    ones are read if ``cached`` (a committed history of this order, from :data:`HISTORY_CACHE`) is
    still its prefix."""
    if cached is not None and cached.same_order(order) and cached.events[-1].sequence <= order.last_sequence:
        last = cached.events[-1]
        rows = fetch_rows(conn, _EVENTS_FROM, {"pk": order.pk, "first": last.sequence})
        if rows and rows[0].sequence == last.sequence and rows[0].event_id == last.event_id:
            return History(order.pk, order.manufacturer_id, order.order_id, order.body_sha256, cached.order,
                           (*cached.events, *(event_record(r) for r in rows[1:])), order.history_revision)
    body = conn.execute(_ORDER_BODY, {"pk": order.pk}).scalar_one()
    rows = fetch_rows(conn, _EVENTS_FROM, {"pk": order.pk, "first": 0})
    return History(order.pk, order.manufacturer_id, order.order_id, order.body_sha256,
                   OrderIn.model_validate(body), tuple(event_record(r) for r in rows), order.history_revision)


def build_snapshot(settings: Settings, order: LockedOrder, history: History, status: str) -> OrderSnapshot:
    """What translation sees: ``history`` (the translated event included) and the order's new ``status``."""
    manufacturer = settings.manufacturer(order.manufacturer_id)
    product = settings.product(order.manufacturer_id, order.product_code)
    site = settings.site(order.site_id)
    if manufacturer is None or product is None or site is None:
        raise LookupError(
            f"order {order.order_id}: its manufacturer, product or site is no longer configured"
        )
    return OrderSnapshot(
        order=history.order,
        coi=order.coi,
        manufacturer=ManufacturerRef(id=manufacturer.id, name=manufacturer.name),
        product=ProductRef(
            code=product.code, name=product.name, autologous=product.autologous, coi_format=product.coi_format
        ),
        site=SiteRef(id=site.id, name=site.name),
        status=OrderStatus(status),
        created_at=order.created_at,
        events=history.events,
        site_order_number=order.site_order_number,
    )
