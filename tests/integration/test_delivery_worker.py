"""The worker's own guarantees, whatever the transport: a sender that raises is a retry (recorded,
the queue held), not a dead worker; the retry waits its backoff before the head is tried again."""

from __future__ import annotations

import asyncio

from adapters.delivery_result import DeliveryOutcome
from gateway.delivery.outbox import MessageState, OutboxMessage
from gateway.delivery.worker import DeliveryWorker
from tests.integration.test_delivery_support import (
    FAST,
    all_finished,
    attempts,
    enqueue_mllp,
    messages,
    wait_until,
)


class FlakySender:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def send(self, message: OutboxMessage) -> DeliveryOutcome:
        self.calls.append(message.control_id)
        if len(self.calls) == 1:
            raise RuntimeError("bug in a sender")
        return DeliveryOutcome("delivered", ack_code="AA")


def test_a_sender_that_raises_is_recorded_as_a_retry_and_the_queue_holds(engine) -> None:
    sender = FlakySender()
    enqueue_mllp(engine, ["M1", "M2"])
    stop = DeliveryWorker(engine, lambda destination: sender, settings=FAST).run_in_thread()
    try:
        wait_until(lambda: all_finished(engine), "delivered")
    finally:
        stop()
    assert sender.calls == ["M1", "M1", "M2"]
    m1 = messages(engine)[0]
    assert [(a.outcome, a.detail) for a in attempts(engine, m1.id)] == [
        ("retry", "sender failed: RuntimeError"), ("delivered", None)]


def test_a_retry_is_not_due_before_its_backoff(engine, clock) -> None:
    outcomes = [DeliveryOutcome("retry", detail="AR"), DeliveryOutcome("delivered")]

    class Sender:
        async def send(self, message: OutboxMessage) -> DeliveryOutcome:
            return outcomes.pop(0)

    enqueue_mllp(engine, ["M1"])
    clock.advance(seconds=1)
    worker = DeliveryWorker(engine, lambda destination: Sender(), settings=FAST, clock=clock)
    assert asyncio.run(worker.deliver_head("site-a/mllp")) is True  # attempt 1: retry
    assert asyncio.run(worker.deliver_head("site-a/mllp")) is False  # not due yet: the clock stands still
    clock.advance(seconds=FAST.retry.delay(1) + 0.001)
    assert asyncio.run(worker.deliver_head("site-a/mllp")) is True
    assert messages(engine)[0].state == MessageState.delivered
