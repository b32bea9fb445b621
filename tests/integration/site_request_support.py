"""Helpers of the site-request tests: an order moved through its stages by manufacturer events, and
site requests sent straight to the service (:func:`gateway.inbound.requests.receive`), as the MLLP
listener and the FHIR routes do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from gateway.inbound.requests import IncomingRequest, Outcome, receive
from gateway.store.site_request_tables import SITE_REQUEST_TRANSITIONS, SITE_REQUESTS
from gateway.store.tables import OrderRow
from tests.conftest import ACME, event_body, order_body

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)

#: (event type, data builder) in stage order; each event occurs one hour after the previous one.
JOURNEY: tuple[tuple[str, str, Any], ...] = (
    ("confirmed", "order.confirmed", lambda t: {}),
    ("apheresis_scheduled", "apheresis.scheduled", lambda t: {"start": iso(t + timedelta(days=7))}),
    ("collected", "collection.completed", lambda t: {"collected_at": iso(t)}),
    ("manufacturing", "manufacturing.started", lambda t: {}),
    ("manufactured", "manufacturing.completed", lambda t: {"lot": "LOT-1",
                                                           "expires_at": iso(t + timedelta(days=100))}),
    ("released", "release.passed", lambda t: {}),
    ("shipped", "shipment.dispatched", lambda t: {}),
    ("received", "shipment.received", lambda t: {"received_at": iso(t)}),
    ("infusion_scheduled", "infusion.scheduled", lambda t: {"start": iso(t + timedelta(days=2))}),
    ("infused", "product.infused", lambda t: {"infused_at": iso(t)}),
)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def place(client, clock, order_id: str = "ORD-1", **overrides: Any) -> None:
    clock.set(T0)
    response = client.post("/v1/orders", json=order_body(order_id, **overrides), headers=ACME)
    assert response.status_code == 201, response.text


def advance_to(client, clock, stage: str, order_id: str = "ORD-1") -> None:
    """Post the journey's events (one hour apart, each at the clock's time) until ``stage``."""
    for n, (reached, event_type, data) in enumerate(JOURNEY):
        now = clock.advance(hours=1)
        body = event_body(f"{order_id}-E{n}", event_type, iso(now), data(now))
        response = client.post(f"/v1/orders/{order_id}/events", json=body, headers=ACME)
        assert response.status_code == 201, response.text
        if reached == stage:
            return
    raise AssertionError(f"no stage {stage}")


def send(client, kind: str, *, site_id: str = "site-a", order_ref: str = "ORD-1", ack: Any = None,
         **fields: Any) -> Outcome:
    """A site request as a channel hands it over (HL7v2 by default)."""
    fields.setdefault("channel", "hl7v2")
    incoming = IncomingRequest(site_id=site_id, kind=kind, order_ref=order_ref, **fields)  # type: ignore[arg-type]
    return receive(client.app.state.context, incoming, ack=ack)


def order_row(engine, order_id: str = "ORD-1") -> OrderRow:
    from sqlmodel import Session, select

    with Session(engine) as session:
        return session.exec(select(OrderRow).where(OrderRow.order_id == order_id)).one()


def request_rows(engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(SITE_REQUESTS).order_by(SITE_REQUESTS.c.seq)).all())


def transitions(engine, seq: int) -> list[tuple[str | None, str, str]]:
    t = SITE_REQUEST_TRANSITIONS
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.from_state, t.c.to_state, t.c.by).where(t.c.request_seq == seq)
                            .order_by(t.c.id)).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]
