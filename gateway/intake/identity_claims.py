"""Chain of Identity claims: a DIN, and an autologous product's lot, belong to exactly one order.

A DIN (ISBT 128 Donation Identification Number) identifies one collection from one donor: once a
``collection.completed`` of an order has recorded it, no other order, of any manufacturer, may
record it (``422 din-in-use`` at ``/data/din``).  For an autologous product a lot is made from one
patient's cells: once an event of an order (``manufacturing.started``, ``manufacturing.completed``,
anything carrying ``data.lot``) has recorded it, no other order of the same manufacturer may
(``422 lot-in-use`` at ``/data/lot``).  Lots are assigned by the manufacturer, so two manufacturers
may use the same lot number; an allogeneic product's lot serves many patients and is not claimed.
The same order may repeat its own DIN or lot (a replay, a later collection, remanufacture).

The database settles it: ``identity_claim`` has one row per claimed value, unique on ``(kind,
scope, value_sha256)``.  Intake calls :func:`check` before the lifecycle decides (a reused DIN is a
Chain of Identity refusal whatever else is wrong with the event, and always reaches the safety log)
and :func:`record` once the event row exists.  Two orders racing for one value both pass
:func:`check`; the second INSERT fails on the constraint, intake retries the whole transaction
(``gateway.intake.accept.retrying_on_conflict``) and the retry's :func:`check` sees the winner's row
and refuses.

Each row keeps the order and the event that made the claim; :func:`release_claims_of_event`
(one DELETE) frees the values of a retracted event; :func:`reclaim` then claims again, for the
order's remaining events, a value one of them still records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.config import ProductConfig
from gateway.errors import CoiError, FieldError
from gateway.intake.order_history import LockedOrder
from gateway.store.tables import IdentityClaimRow, OrderRow, SafetyLogRow

__all__ = ["Claim", "ClaimRefused", "claims_of", "check", "record", "release_claims_of_event", "reclaim"]

_CLAIM: sa.Table = IdentityClaimRow.__table__  # type: ignore[attr-defined]
_ORDER: sa.Table = OrderRow.__table__  # type: ignore[attr-defined]

_HOLDER = (
    sa.select(_CLAIM.c.order_pk, _ORDER.c.manufacturer_id, _ORDER.c.order_id)
    .select_from(_CLAIM.join(_ORDER, _ORDER.c.id == _CLAIM.c.order_pk))
    .where(_CLAIM.c.kind == sa.bindparam("kind"), _CLAIM.c.scope == sa.bindparam("scope"),
           _CLAIM.c.value_sha256 == sa.bindparam("sha"))
)
_INSERT = _CLAIM.insert()
_RELEASE = _CLAIM.delete().where(_CLAIM.c.event_pk == sa.bindparam("event_pk"))

_WHAT = {"din": "DIN", "lot": "lot"}


@dataclass(frozen=True)
class Claim:
    """One value an event records: ``kind`` ``din`` (scope ``""``: the whole gateway) or ``lot``
    (scope: the manufacturer)."""

    kind: Literal["din", "lot"]
    scope: str
    value: str

    @property
    def pointer(self) -> str:
        return f"/data/{self.kind}"

    @property
    def value_sha256(self) -> str:
        return hashlib.sha256(self.value.encode("utf-8")).hexdigest()


class ClaimRefused(Exception):
    """Carries a ``din-in-use`` / ``lot-in-use`` refusal out of the write transaction (which then
    rolls back) with the safety-log entry to write in a transaction of its own."""

    def __init__(self, error: CoiError, entry: SafetyLogRow) -> None:
        super().__init__(error.detail)
        self.error = error
        self.entry = entry


def claims_of(product: ProductConfig, manufacturer_id: str, event_type: str,
              data: dict[str, Any]) -> tuple[Claim, ...]:
    """The values an event's (validated, DIN-normalised) ``data`` claims.  Pure."""
    claims: list[Claim] = []
    din = data.get("din")
    if event_type == "collection.completed" and isinstance(din, str) and din:
        claims.append(Claim("din", "", din))
    lot = data.get("lot")
    if product.autologous and isinstance(lot, str) and lot:
        claims.append(Claim("lot", manufacturer_id, lot))
    return tuple(claims)


def check(conn: Connection, order: LockedOrder, product: ProductConfig, event_id: str, event_type: str,
          data: dict[str, Any], now: datetime) -> tuple[Claim, ...]:
    """The event's claims that no order holds yet (to :func:`record` once the event row exists);
    :class:`ClaimRefused` if another order holds one.  A value this order holds is fine."""
    free: list[Claim] = []
    for claim in claims_of(product, order.manufacturer_id, event_type, data):
        holder = conn.execute(_HOLDER, {"kind": claim.kind, "scope": claim.scope,
                                        "sha": claim.value_sha256}).first()
        if holder is None:
            free.append(claim)
        elif int(holder.order_pk) != order.pk:
            raise _refusal(claim, order, event_id, f"{holder.manufacturer_id}/{holder.order_id}", now)
    return tuple(free)


def record(conn: Connection, claims: tuple[Claim, ...], order_pk: int, event_pk: int, now: datetime) -> None:
    """Insert the claims :func:`check` found free.  Raises ``IntegrityError`` if another order took
    one in the meantime: the caller retries the transaction, whose :func:`check` then refuses."""
    if claims:
        conn.execute(_INSERT, [{"kind": c.kind, "scope": c.scope, "value": c.value,
                                "value_sha256": c.value_sha256, "order_pk": order_pk, "event_pk": event_pk,
                                "claimed_at": now} for c in claims])


def release_claims_of_event(conn: Connection, event_pk: int) -> int:
    """Free every value the event claimed (for retraction); the number of claims released."""
    return int(conn.execute(_RELEASE, {"event_pk": event_pk}).rowcount)


def reclaim(conn: Connection, order: LockedOrder, product: ProductConfig,
            events: Iterable[tuple[int, str, str, dict[str, Any]]], now: datetime) -> None:
    """Claim again what the order's remaining ``events`` (``(event_pk, event_id, type, data)``, in
    acceptance order) record, after :func:`release_claims_of_event` freed a retracted event's
    values: a DIN the order recorded twice stays the order's, now held by the later event.  Run in
    the transaction holding the order's lock; :class:`ClaimRefused` if another order took a value."""
    for event_pk, event_id, event_type, data in events:
        record(conn, check(conn, order, product, event_id, event_type, data, now), order.pk, event_pk, now)


def _refusal(claim: Claim, order: LockedOrder, event_id: str, holder: str, now: datetime) -> ClaimRefused:
    what = _WHAT[claim.kind]
    detail = f"This {what} is already recorded on another order; nothing was changed."
    error = CoiError(detail, code=f"{claim.kind}-in-use",
                     errors=[FieldError(claim.pointer, "already recorded on another order")])
    # ids only: the value, and which order holds it (the safety log is for admins; the answer to
    # the manufacturer never names another tenant's order)
    logged = f"{what} {claim.value[:200]!r} is held by order {holder}"
    entry = SafetyLogRow(at=now, code=error.code, manufacturer_id=order.manufacturer_id,
                         order_id=order.order_id, event_id=event_id, expected_coi=None,
                         presented_coi=order.coi, detail=logged[:500])
    return ClaimRefused(error, entry)
