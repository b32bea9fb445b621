"""Concurrent duplicates cannot slip through: real threads against the real database."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, select

from gateway.context import build_context
from gateway.errors import GatewayError
from gateway.intake.events import accept_event
from gateway.intake.orders import accept_order
from gateway.store.tables import EventRow, OrderRow, PatientCoiRow
from mappings.events import EventIn
from mappings.orders import OrderIn
from tests.conftest import event_body, order_body

N = 16


def _race(fn, n=N):
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        try:
            return fn(i)
        except GatewayError as exc:
            return exc.code

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_16_identical_concurrent_creates_yield_one_order(settings, engine):
    context = build_context(settings, engine)
    order = OrderIn.model_validate(order_body("RACE-1"))
    results = _race(lambda i: accept_order(context, "acme-bio", order))
    assert sum(1 for r in results if not isinstance(r, str) and r.created) == 1
    assert all(not isinstance(r, str) for r in results), results
    assert len({r.order_pk for r in results}) == 1
    with Session(engine) as session:
        assert len(session.exec(select(OrderRow)).all()) == 1
        assert len(session.exec(select(EventRow)).all()) == 1
        assert len(session.exec(select(PatientCoiRow)).all()) == 1


def test_16_concurrent_creates_over_http_yield_one_201(client, engine):
    results = _race(
        lambda i: (
            client.post(
                "/v1/orders", json=order_body("RACE-2"), headers={"Authorization": "Bearer demo-acme-token"}
            ).status_code
        )
    )
    assert Counter(results) == {201: 1, 200: N - 1}
    with Session(engine) as session:
        assert len(session.exec(select(OrderRow)).all()) == 1


def test_conflicting_concurrent_creates_one_wins_rest_409(settings, engine):
    context = build_context(settings, engine)
    bodies = [OrderIn.model_validate(order_body("RACE-3", note=f"variant {i}")) for i in range(N)]
    results = _race(lambda i: accept_order(context, "acme-bio", bodies[i]))
    assert sum(1 for r in results if not isinstance(r, str)) == 1
    assert Counter(r for r in results if isinstance(r, str)) == {"duplicate-order": N - 1}


def test_two_patients_racing_for_one_coi(settings, engine):
    context = build_context(settings, engine)

    def body(i):
        b = order_body(f"RACE-P{i}")
        b["patient"] = {**b["patient"], "mrn": f"MRN-{i}"}
        return OrderIn.model_validate(b)

    bodies = [body(i) for i in range(N)]
    results = _race(lambda i: accept_order(context, "acme-bio", bodies[i]))
    assert sum(1 for r in results if not isinstance(r, str)) == 1
    assert Counter(r for r in results if isinstance(r, str)) == {"coi-in-use": N - 1}


def test_concurrent_events_get_distinct_sequences_and_duplicates_collapse(settings, engine):
    t0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
    context = build_context(settings, engine, now=lambda: t0 + timedelta(days=1))  # events are in the past
    accept_order(context, "acme-bio", OrderIn.model_validate(order_body("RACE-4")))
    confirm = EventIn.model_validate(
        event_body("C1", "order.confirmed", (t0 + timedelta(hours=1)).isoformat())
    )
    results = _race(lambda i: accept_event(context, "acme-bio", "RACE-4", confirm))
    assert sum(1 for r in results if r.created) == 1 and len({r.event_pk for r in results}) == 1
    holds = [
        EventIn.model_validate(
            event_body(
                f"H{i}",
                "apheresis.rescheduled",
                (t0 + timedelta(hours=2, minutes=i)).isoformat(),
                {"start": (t0 + timedelta(days=3)).isoformat()},
            )
        )
        for i in range(8)
    ]
    results = _race(lambda i: accept_event(context, "acme-bio", "RACE-4", holds[i]), n=8)
    assert all(not isinstance(r, str) or r in ("out-of-order",) for r in results), results
    with Session(engine) as session:
        sequences = [e.sequence for e in session.exec(select(EventRow).order_by(EventRow.sequence)).all()]
        order = session.exec(select(OrderRow)).one()
    assert sequences == list(range(len(sequences))) and order.last_sequence == sequences[-1]
