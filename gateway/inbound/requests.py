"""The site-request service: one entry for both channels (HL7v2, FHIR), one for the manufacturer.

``receive(context, incoming, ack=...)``: in ONE transaction (the model is
:func:`gateway.intake.events.accept_event`): recognise a duplicate (same ``dedupe_key``: the first
outcome and its stored ACK, nothing changed), find the order among the site's orders (another site's
order is ``unknown-order``, never a leak), check the CoI (``coi-mismatch`` / ``coi-missing``, written
to the safety log), check the requested values and their times (``invalid-request``), store one site
request and decide it:

* the lifecycle refuses its event now (terminal state, not on hold, ...): ``declined`` at once with
  the lifecycle's reason (``Outcome.declined_at_once``; the HL7v2 answer is AE);
* the product's policy (:mod:`gateway.inbound.policy`) lets the gateway decide: applied as a lifecycle
  event with ``source: site`` (:func:`gateway.intake.append.append_event`, the manufacturer events'
  own path), state ``applied``;
* else ``awaiting-manufacturer``.

Then queue the site's answer and the manufacturer's webhook (:mod:`gateway.inbound.answers`), store the
HL7v2 ACK built by ``ack`` from the outcome, and commit: the caller sends the ACK after ``receive``
returns (ACK after commit).  Concurrent identical messages meet the unique dedupe constraint; the
loser retries and answers as a duplicate.

``decide_request(context, manufacturer_id, request_id, decision, reason)``: the manufacturer's decision
(idempotent; 404 for another manufacturer's request), see :func:`decide_request`.

Nothing here logs a reason, a requested value or the raw message: ids, kinds and states only.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlmodel import Session

from gateway.audit import Actor
from gateway.audit.patients import order_reference
from gateway.config import ProductConfig
from gateway.context import Context
from gateway.errors import CoiError, Conflict, FieldError, LifecycleError, NotFound, ValidationFailed
from gateway.inbound import answers, records
from gateway.inbound.policy import is_automatic
from gateway.inbound.site_events import (
    InvalidRequest,
    PlannedEvent,
    RequestedValues,
    check_times,
    planned_event,
    requested_values,
)
from gateway.intake.accept import (
    ORDERS,
    audit_write,
    canonical_sha256,
    retrying_on_conflict,
    stored_mrn,
    write_safety_log,
)
from gateway.intake.append import append_event
from gateway.intake.coi import normalize_product_coi
from gateway.intake.lifecycle import TERMINAL_STATUSES, LifecycleState, decide
from gateway.intake.order_history import (
    HISTORY_CACHE,
    History,
    LockedOrder,
    build_snapshot,
    load_history,
    lock_order_pk,
    lock_site_orders,
)
from gateway.store.db import write_session
from gateway.store.tables import SafetyLogRow
from mappings.site_request import SiteRequestChannel, SiteRequestKind, SiteRequestView
from mappings.snapshot import OrderSnapshot

__all__ = ["IncomingRequest", "Refusal", "Outcome", "AckBuilder", "receive", "decide_request",
           "decide_request_row", "REASON_MAX_CHARS"]

log = logging.getLogger("cgt_gateway.inbound")
REASON_MAX_CHARS = 1000


@dataclass(frozen=True)
class IncomingRequest:
    """A site request as a channel read it (the channel has already checked syntax and the site).

    ``order_ref``: the order id as the gateway sent it (ORC-2.1 / SCH-26.1 / Task.focus / basedOn).
    ``site_order_ref``: HL7v2 ORC-3.1 / SCH-27.1 (the filler's number), when the message has one: once a
    site has told us its own number (``NA``) it may echo it there instead of our id in ORC-2.  The order
    is looked up among the site's orders by ``order_ref`` as our order id, else ``site_order_ref`` as our
    order id, else ``site_order_ref`` as the site's own number (``cgt_order.site_order_number``).
    ``coi``: the CoI the message carries, or None; ``coi_required``: the site's profile puts the CoI in
    this message type, so None (or a mismatch) is refused ``coi-missing`` / ``coi-mismatch`` and written
    to the safety log.  ``requested``: see :class:`mappings.site_request.SiteRequestView` (times as
    ISO-8601 strings or aware datetimes).  ``dedupe_key``: HL7v2 ``MSH-3|MSH-4|MSH-10`` (the service
    hashes it); None for FHIR.  ``raw``: the message or resource as received (kept with the request;
    never logged).  ``sender``: who sent it (API client name, or ``mllp:<peer address>``).
    ``manufacturer_id``: optional; when the channel knows the order's manufacturer (e.g. from a FHIR
    Task's focus), it narrows the look-up (two manufacturers may use one order id at a site).
    """

    site_id: str
    kind: SiteRequestKind
    channel: SiteRequestChannel
    order_ref: str
    requested: dict[str, Any] = field(default_factory=dict)
    site_order_ref: str | None = None
    reason: str | None = None
    coi: str | None = None
    coi_required: bool = False
    dedupe_key: str | None = None
    control_id: str | None = None
    raw: str = ""
    sender: str = ""
    actor: Actor | None = None  # who acts, for the audit record (None: the gateway itself)
    manufacturer_id: str | None = None


@dataclass(frozen=True)
class Refusal:
    """Why nothing was stored: ``code`` is ``unknown-order`` | ``coi-mismatch`` | ``coi-missing`` |
    ``invalid-request`` (and ``hl7_error`` the HL7 table 0357 code the ACK's ERR-3 carries: 204 for an
    unknown order, 207 otherwise); ``pointer`` names the field for problem+json / OperationOutcome."""

    code: str
    detail: str
    hl7_error: str
    pointer: str


@dataclass(frozen=True)
class Outcome:
    """What ``receive`` did.  ``request`` is None exactly when ``refusal`` is set.

    ``created``: False for a duplicate.  ``declined_at_once``: the lifecycle can never take it (the
    HL7v2 answer is AE with the reason; ``decision_code`` is the lifecycle's code, e.g.
    ``terminal-state``).  ``ack``: the ACK stored with the request (for a duplicate, the first one's),
    None when no ``ack`` builder was given.
    """

    request: SiteRequestView | None
    refusal: Refusal | None = None
    created: bool = True
    declined_at_once: bool = False
    ack: str | None = None
    decision_code: str | None = None


AckBuilder = Callable[[Outcome], str]


def _site_by(site_id: str) -> str:
    return f"site:{site_id}"


def _outcome_of(row: Any, *, created: bool) -> Outcome:
    return Outcome(records.view(row), created=created, declined_at_once=row.decided_by == "lifecycle",
                   ack=row.ack, decision_code=row.decision_code)


def _unknown_order(incoming: IncomingRequest, detail: str) -> Outcome:
    return Outcome(None, Refusal("unknown-order", detail, "204", "/order_ref"), created=False)


def _coi_refusal(incoming: IncomingRequest, order: LockedOrder, product: ProductConfig,
                 now: datetime) -> tuple[Outcome, SafetyLogRow] | None:
    """The CoI check (when required, or when one was sent); a refusal and its safety-log entry."""
    if incoming.coi is None and not incoming.coi_required:
        return None
    if incoming.coi is None or not incoming.coi.strip():
        code, presented = "coi-missing", ""
        reason = "the message carries no Chain of Identity identifier where the site's profile puts it"
    else:
        try:
            presented = normalize_product_coi(incoming.coi, product.coi_format, product.coi_pattern)
            reason = "does not match the order's Chain of Identity identifier"
        except CoiError as exc:
            presented = incoming.coi.strip()[:64]
            why = exc.errors[0].reason if exc.errors else exc.detail
            reason = f"not a valid CoI for {product.code} ({why})"
        if presented == order.coi:
            return None
        code = "coi-mismatch"
    detail = f"Chain of Identity check failed: {reason}; nothing was changed."
    message = f"site-request:{incoming.channel}:{incoming.control_id}"[:128] if incoming.control_id else None
    entry = SafetyLogRow(
        at=now, code=code, manufacturer_id=order.manufacturer_id, order_id=order.order_id, event_id=message,
        expected_coi=order.coi, presented_coi=presented,
        detail=f"site {incoming.site_id} ({incoming.channel}): {reason}"[:500])
    return Outcome(None, Refusal(code, detail, "207", "/coi"), created=False), entry


def _invalid(error: InvalidRequest) -> Outcome:
    return Outcome(None, Refusal("invalid-request", error.detail, "207", error.pointer), created=False)


_SET_SITE_ORDER_NUMBER = ORDERS.update().where(ORDERS.c.id == sa.bindparam("k_pk")).values(
    site_order_number=sa.bindparam("k_number", type_=ORDERS.c.site_order_number.type),
    updated_at=sa.bindparam("k_updated", type_=ORDERS.c.updated_at.type))


_BY_SITE_ORDER_NUMBER = (sa.select(ORDERS.c.id)
                         .where(ORDERS.c.site_id == sa.bindparam("s"),
                                ORDERS.c.site_order_number == sa.bindparam(
                                    "n", type_=ORDERS.c.site_order_number.type))
                         .order_by(ORDERS.c.id).limit(2))


def _find_orders(conn: Connection, incoming: IncomingRequest) -> list[LockedOrder]:
    """The site's orders the request names (locked): ``order_ref`` as our order id, else
    ``site_order_ref`` as our order id, else ``site_order_ref`` as the site's own order number.
    Only ever among ``incoming.site_id``'s orders."""
    def mine(found: list[LockedOrder]) -> list[LockedOrder]:
        if incoming.manufacturer_id is None:
            return found
        return [o for o in found if o.manufacturer_id == incoming.manufacturer_id]

    orders = mine(lock_site_orders(conn, incoming.site_id, incoming.order_ref)) if incoming.order_ref else []
    number = incoming.site_order_ref
    if orders or not number:
        return orders
    if number != incoming.order_ref:
        orders = mine(lock_site_orders(conn, incoming.site_id, number))
        if orders:
            return orders
    pks = [row.id for row in conn.execute(_BY_SITE_ORDER_NUMBER, {"s": incoming.site_id, "n": number[:64]})]
    return mine([lock_order_pk(conn, pk) for pk in pks])


def _history(conn: Connection, context: Context, order: LockedOrder) -> History:
    return load_history(conn, order, HISTORY_CACHE.get(context.engine, order.pk))


@dataclass
class _Applied:
    """What applying a request changed: the snapshot its answer is translated from, the history to cache."""

    snapshot: OrderSnapshot
    history: History
    event_pk: int | None = None


def _apply(session: Session, context: Context, order: LockedOrder, product: ProductConfig, request_id: str,
           planned: PlannedEvent | None, values: RequestedValues, kind: SiteRequestKind, now: datetime,
           state: LifecycleState) -> _Applied:
    """Apply the request to the order (its lifecycle event, or the site's order number) in this
    transaction; raises :class:`LifecycleError` if the lifecycle refuses the event."""
    conn = session.connection()
    if planned is not None:
        event_id = f"site-request-{request_id}"
        body_sha256 = canonical_sha256({"event_id": event_id, "type": planned.type.value,
                                        "occurred_at": planned.occurred_at.isoformat(),
                                        "coi": order.coi, "data": planned.data})
        decision = decide(state, planned.type, planned.occurred_at, planned.typed,
                          autologous=product.autologous)
        appended = append_event(session, context, order, product, event_id=event_id, event_type=planned.type,
                                occurred_at=planned.occurred_at, typed=planned.typed, data=planned.data,
                                body_sha256=body_sha256, now=now, source="site", decision=decision)
        return _Applied(appended.snapshot, appended.history, appended.row.id)
    history = _history(conn, context, order)
    if kind == "order_number" and values.site_order_number is not None:
        conn.execute(_SET_SITE_ORDER_NUMBER, {"k_pk": order.pk, "k_number": values.site_order_number,
                                              "k_updated": now})
        order = dataclasses.replace(order, site_order_number=values.site_order_number)
    return _Applied(build_snapshot(context.settings, order, history, order.status), history)


def receive(context: Context, incoming: IncomingRequest, *, ack: AckBuilder | None = None) -> Outcome:
    """Store and decide one site request; see the module docstring.  Never raises for what the site
    sent: a refusal is an :class:`Outcome` with ``refusal`` set (nothing stored)."""
    dedupe = records.dedupe_sha256(incoming.dedupe_key) if incoming.dedupe_key else None
    reason = (incoming.reason or "").strip()[:REASON_MAX_CHARS] or None

    def attempt() -> tuple[Outcome, SafetyLogRow | None, History | None]:
        now = context.now()
        with write_session(context.engine) as session:
            conn = session.connection()
            if dedupe is not None:
                first = records.find_by_dedupe(conn, incoming.site_id, dedupe)
                if first is not None:
                    return _outcome_of(first, created=False), None, None
            orders = _find_orders(conn, incoming)
            if not orders:
                named = incoming.order_ref or incoming.site_order_ref or ""
                detail = f"No order {named[:64]!r} at this site."
                return _unknown_order(incoming, detail), None, None
            if len(orders) > 1:
                named = (incoming.order_ref or incoming.site_order_ref or "")[:64]
                return _unknown_order(incoming, f"Several manufacturers' orders at this site use the number "
                                                f"{named!r}."), None, None
            order = orders[0]
            if dedupe is not None and conn.dialect.name == "postgresql":  # a twin committed meanwhile?
                first = records.find_by_dedupe(conn, incoming.site_id, dedupe)
                if first is not None:
                    return _outcome_of(first, created=False), None, None
            product = context.settings.product(order.manufacturer_id, order.product_code)
            assert product is not None
            refused = _coi_refusal(incoming, order, product, now)
            if refused is not None:
                return refused[0], refused[1], None
            state = LifecycleState.model_validate(order.state)
            try:
                values = requested_values(incoming.kind, incoming.requested)
                planned = planned_event(incoming.kind, values, reason, state, now)
                if planned is not None:
                    check_times(context.settings, planned, now)
            except InvalidRequest as error:
                return _invalid(error), None, None
            request_id = records.new_request_id()
            row = records.insert(conn, {
                "request_id": request_id, "order_pk": order.pk, "order_id": order.order_id,
                "manufacturer_id": order.manufacturer_id, "site_id": incoming.site_id,
                "kind": incoming.kind, "state": "pending", "channel": incoming.channel,
                "requested": values.as_json(), "reason": reason, "received_at": now,
                "sender": incoming.sender[:200], "raw": incoming.raw, "dedupe_sha256": dedupe,
                "control_id": incoming.control_id[:64] if incoming.control_id else None,
            }, by=_site_by(incoming.site_id), now=now)
            row, applied = _decide_at_once(session, context, order, product, row, planned, values, state, now)
            answers.queue_site_answer(session, context, applied.snapshot, records.view(row), now)
            answers.queue_webhook(session, context, row, now)
            audit_write(conn, context, incoming.actor, now, "create", "site_requests.create",
                        manufacturer_id=order.manufacturer_id, site_id=incoming.site_id,
                        mrn=stored_mrn(conn, order.pk),
                        entities=[order_reference(order.manufacturer_id, order.order_id),
                                  f"site-request:{request_id}"])
            outcome = _outcome_of(row, created=True)
            if ack is not None:
                text = ack(outcome)
                records.set_ack(conn, row.seq, text)
                outcome = dataclasses.replace(outcome, ack=text)
            log.info("site request received", extra={
                "site_id": incoming.site_id, "manufacturer_id": order.manufacturer_id,
                "order_id": order.order_id, "request_id": request_id, "kind": incoming.kind,
                "channel": incoming.channel, "state": row.state})
        return outcome, None, applied.history  # committed

    outcome, safety, history = retrying_on_conflict(attempt)
    if safety is not None:
        write_safety_log(context, safety)
    if history is not None:
        HISTORY_CACHE.put(context.engine, history)
    if outcome.refusal is not None and ack is not None:
        outcome = dataclasses.replace(outcome, ack=ack(outcome))
    return outcome  # type: ignore[no-any-return]


def _decide_at_once(session: Session, context: Context, order: LockedOrder, product: ProductConfig, row: Any,
                    planned: PlannedEvent | None, values: RequestedValues, state: LifecycleState,
                    now: datetime) -> tuple[Any, _Applied]:
    """The request's first decision: declined (lifecycle), applied (policy) or awaiting the manufacturer."""
    conn = session.connection()
    kind: SiteRequestKind = row.kind
    if planned is None and kind != "order_number":  # an appointment cancelled (SIU^S15): nothing to apply
        if state.status in TERMINAL_STATUSES:
            row = records.move(conn, row, "declined", by="gateway", now=now, decided_by="lifecycle",
                               code="terminal-state", reason=f"the order is {state.status.value}")
        else:
            row = records.move(conn, row, "awaiting-manufacturer", by="gateway", now=now, reason=None,
                               decided_by=None)
        history = _history(conn, context, order)
        return row, _Applied(build_snapshot(context.settings, order, history, order.status), history)
    if planned is not None:
        try:
            decide(state, planned.type, planned.occurred_at, planned.typed, autologous=product.autologous)
        except LifecycleError as exc:
            row = records.move(conn, row, "declined", by="gateway", now=now, decided_by="lifecycle",
                               code=exc.code, reason=exc.detail[:REASON_MAX_CHARS])
            history = _history(conn, context, order)
            return row, _Applied(build_snapshot(context.settings, order, history, order.status), history)
    if kind != "order_number" and not is_automatic(product, kind, state):
        row = records.move(conn, row, "awaiting-manufacturer", by="gateway", now=now, reason=None,
                           decided_by=None)
        history = _history(conn, context, order)
        return row, _Applied(build_snapshot(context.settings, order, history, order.status), history)
    applied = _apply(session, context, order, product, row.request_id, planned, values, kind, now, state)
    row = records.move(conn, row, "applied", by="gateway", now=now, decided_by="policy",
                       reason="applied by the product's policy", event_pk=applied.event_pk)
    return row, applied


def decide_request_row(context: Context, manufacturer_id: str, request_id: str,
                       decision: Literal["accept", "decline"], reason: str | None, *,
                       by: str | None = None, audit_actor: Actor | None = None) -> Any:
    """The manufacturer's decision on one of its requests awaiting it; the request's row as stored.

    404 ``not-found`` for an unknown request or another manufacturer's; 422 a decline without a reason
    (``/reason``); the same decision again: the row unchanged (idempotent); another decision: 409
    ``decision-conflict``; a request not awaiting the manufacturer: 409 ``not-awaiting-decision``; an
    accept the lifecycle refuses now: 409 with the lifecycle's code (the request stays awaiting).
    """
    text = (reason or "").strip()[:REASON_MAX_CHARS] or None
    if decision == "decline" and text is None:
        raise ValidationFailed("A decline needs a reason (it is sent to the site).",
                               errors=[FieldError("/reason", "required when the decision is decline")])
    actor = by or f"manufacturer:{manufacturer_id}"

    def attempt() -> tuple[Any, History | None]:
        now = context.now()
        with write_session(context.engine) as session:
            conn = session.connection()
            found = records.find(conn, request_id)
            if found is None or found.manufacturer_id != manufacturer_id:
                raise NotFound(f"No site request {request_id[:64]!r}.")
            order = lock_order_pk(conn, found.order_pk)
            row = records.find(conn, request_id)  # again, under the order's lock
            assert row is not None
            if row.decided_by == "manufacturer":
                if row.decision == decision:
                    return row, None
                raise Conflict(f"The request was already decided: {row.decision}.", code="decision-conflict",
                               errors=[FieldError("/decision", f"already {row.decision}")])
            if row.state != "awaiting-manufacturer":
                raise Conflict(f"The request is {row.state}; it is not awaiting the manufacturer's decision.",
                               code="not-awaiting-decision",
                               errors=[FieldError("/decision", f"the request is {row.state}")])
            product = context.settings.product(order.manufacturer_id, order.product_code)
            assert product is not None
            if decision == "decline":
                row = records.move(conn, row, "declined", by=actor, now=now, reason=text,
                                   decided_by="manufacturer", decision="decline")
                history = _history(conn, context, order)
                snapshot = build_snapshot(context.settings, order, history, order.status)
            else:
                state = LifecycleState.model_validate(order.state)
                values = RequestedValues.model_validate(row.requested)
                planned = planned_event(row.kind, values, row.reason, state, now)
                try:
                    applied = _apply(session, context, order, product, row.request_id, planned, values,
                                     row.kind, now, state)
                except LifecycleError as exc:
                    raise LifecycleError(f"The order's lifecycle refuses this change now: {exc.detail}",
                                         code=exc.code, status=409, errors=exc.errors) from None
                row = records.move(conn, row, "accepted", by=actor, now=now, reason=text,
                                   decided_by="manufacturer", decision="accept", event_pk=applied.event_pk)
                history, snapshot = applied.history, applied.snapshot
            answers.queue_site_answer(session, context, snapshot, records.view(row), now)
            audit_write(conn, context, audit_actor, now, "update", "site_requests.decide",
                        manufacturer_id=manufacturer_id, site_id=row.site_id, mrn=stored_mrn(conn, order.pk),
                        entities=[order_reference(manufacturer_id, row.order_id),
                                  f"site-request:{request_id}"])
            log.info("site request decided", extra={
                "site_id": row.site_id, "manufacturer_id": manufacturer_id, "order_id": row.order_id,
                "request_id": request_id, "kind": row.kind, "state": row.state})
        return row, history  # committed

    row, history = retrying_on_conflict(attempt)
    if history is not None:
        HISTORY_CACHE.put(context.engine, history)
    return row


def decide_request(context: Context, manufacturer_id: str, request_id: str,
                   decision: Literal["accept", "decline"], reason: str | None) -> SiteRequestView:
    """The manufacturer's decision (idempotent; 404 for another manufacturer's request); see
    :func:`decide_request_row` for the refusals."""
    return records.view(decide_request_row(context, manufacturer_id, request_id, decision, reason))
