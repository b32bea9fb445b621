"""The worker's database side (:mod:`gateway.delivery.store`): a dead letter is recorded by the same
statements as a delivery or a retry, so the same rules hold (a message skipped meanwhile stays skipped,
the attempt is always kept), and its record and its follow-ups commit together or not at all; a
worker's lease book renews a lease only once half of it has run and gives back only its own leases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from adapters.delivery_result import DeliveryOutcome
from gateway.delivery.lease import LeaseBook, acquire_lease
from gateway.delivery.outbox import DestinationLease, MessageState, OutboxMessage, skip
from gateway.delivery.senders import dead_letter_notifier
from gateway.delivery.worker import DeliveryWorker
from tests.integration.test_delivery_support import FAST, alerts, attempts, enqueue_mllp, messages

_ACK = {"delivered": "AA", "dead": "AE", "retry": "AR"}


class SkippedDuringSend:
    """An operator skips the message while it is being sent; the site then answers ``status``."""

    def __init__(self, engine: Engine, status: str) -> None:
        self.engine, self.status = engine, status

    async def send(self, message: OutboxMessage) -> DeliveryOutcome:
        with Session(self.engine) as session:
            skip(session, message.id or 0, reason="sent by hand", now=datetime.now(UTC))
        ack = _ACK[self.status]
        return DeliveryOutcome(self.status, ack_code=ack, detail=f"answered {ack}", latency_ms=2.0)


@pytest.mark.parametrize("status", ["delivered", "dead", "retry"])
def test_every_outcome_leaves_a_message_skipped_meanwhile_skipped_and_keeps_the_attempt(
        engine: Engine, status: str) -> None:
    enqueue_mllp(engine, ["M1"])
    sender = SkippedDuringSend(engine, status)
    worker = DeliveryWorker(engine, lambda d: sender, settings=FAST, worker_id="w1")
    assert asyncio.run(worker.deliver_head("site-a/mllp")) is True
    [m1] = messages(engine)
    assert (m1.state, m1.skip_reason, m1.attempts, m1.last_outcome) == (
        MessageState.skipped, "sent by hand", 0, None)
    [attempt] = attempts(engine, m1.id or 0)
    assert (attempt.outcome, attempt.ack_code, attempt.detail, attempt.latency_ms, attempt.worker_id) == (
        status, _ACK[status], f"answered {_ACK[status]}", 2.0, "w1")


class Refused:
    async def send(self, message: OutboxMessage) -> DeliveryOutcome:
        return DeliveryOutcome("dead", ack_code="AE", detail="Unknown product", latency_ms=1.0,
                               warning="MSA-2 does not match")


def test_a_dead_letter_is_recorded_with_its_alerts_and_follow_up_in_one_transaction(engine: Engine) -> None:
    enqueue_mllp(engine, ["M1", "M2"])
    worker = DeliveryWorker(engine, lambda d: Refused(), settings=FAST, worker_id="w1",
                            on_dead_letter=dead_letter_notifier({"acme-bio"}))
    assert asyncio.run(worker.deliver_head("site-a/mllp")) is True
    m1, m2 = messages(engine, "site-a/mllp")
    assert (m1.state, m1.attempts, m1.last_outcome, m1.last_detail) == (MessageState.dead, 1, "dead",
                                                                        "Unknown product")
    assert m1.finished_at is not None and m2.state == MessageState.pending and m2.attempts == 0
    assert [(a.outcome, a.ack_code, a.worker_id) for a in attempts(engine, m1.id or 0)] == [
        ("dead", "AE", "w1")]
    assert sorted((a.kind, a.message_id) for a in alerts(engine)) == [
        ("dead-letter", m1.id), ("warning", m1.id)]
    [note] = messages(engine, "acme-bio/webhook")
    assert (note.message_type, note.order_id, note.state) == ("delivery.dead_lettered", m1.order_id,
                                                              MessageState.pending)


def test_a_dead_letter_whose_follow_up_fails_is_not_recorded_at_all(engine: Engine) -> None:
    enqueue_mllp(engine, ["M1"])

    def broken(session: Session, message: OutboxMessage, outcome: DeliveryOutcome, now: datetime) -> None:
        raise RuntimeError("follow-up failed")

    worker = DeliveryWorker(engine, lambda d: Refused(), settings=FAST, worker_id="w1", on_dead_letter=broken)
    with pytest.raises(RuntimeError, match="follow-up failed"):
        asyncio.run(worker.deliver_head("site-a/mllp"))
    [m1] = messages(engine)
    assert (m1.state, m1.attempts, m1.finished_at) == (MessageState.pending, 0, None)  # it will be sent again
    assert attempts(engine, m1.id or 0) == [] and alerts(engine) == []


def _lease(engine: Engine, destination: str) -> tuple[str, datetime] | None:
    with Session(engine) as session:
        row = session.execute(select(DestinationLease.owner, DestinationLease.expires_at)
                              .where(DestinationLease.destination == destination)).first()
    return (row[0], row[1]) if row is not None else None


def test_a_lease_book_renews_a_lease_only_once_half_of_it_has_run(engine: Engine) -> None:
    now = datetime.now(UTC)
    book = LeaseBook("w1", 10)
    with engine.connect() as conn:
        assert book.hold(conn, "site-a/mllp", now)
        conn.commit()
        first = _lease(engine, "site-a/mllp")
        assert first is not None and first[0] == "w1"
        assert book.fresh("site-a/mllp", now + timedelta(seconds=5))
        assert book.hold(conn, "site-a/mllp", now + timedelta(seconds=4))  # fresh: nothing written
        conn.commit()
        assert _lease(engine, "site-a/mllp") == first
        assert not book.fresh("site-a/mllp", now + timedelta(seconds=6))
        assert book.hold(conn, "site-a/mllp", now + timedelta(seconds=6))  # half has run: renewed
        conn.commit()
        renewed = _lease(engine, "site-a/mllp")
        assert renewed is not None and renewed[1] > first[1]


def test_a_lease_book_sees_a_lease_held_elsewhere_and_gives_back_only_its_own(engine: Engine) -> None:
    now = datetime.now(UTC)
    with Session(engine) as session:
        assert acquire_lease(session, "site-b/mllp", "w2", now, 10)
    book = LeaseBook("w1", 10)
    with engine.connect() as conn:
        assert not book.hold(conn, "site-b/mllp", now) and book.held_elsewhere("site-b/mllp")
        assert book.hold(conn, "site-a/mllp", now) and not book.held_elsewhere("site-a/mllp")
        conn.commit()
    book.give_back_all(engine)
    assert _lease(engine, "site-a/mllp") is None
    held = _lease(engine, "site-b/mllp")
    assert held is not None and held[0] == "w2"
    assert not book.fresh("site-a/mllp", now)
