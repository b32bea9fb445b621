"""Delivery latency reaches /metrics when a standalone worker (another process: ``serve --no-worker`` plus
``cgt-gateway worker``) did the delivering: it is read from the recorded attempts at scrape time, like the
depth and the outcome counts, not only from the in-process worker's histogram."""

from __future__ import annotations

import asyncio

from adapters.delivery_result import DeliveryOutcome
from gateway.delivery.outbox import OutboxMessage
from gateway.delivery.worker import DeliveryWorker
from tests.integration.test_delivery_support import FAST, enqueue_mllp


class Scripted:
    def __init__(self, *outcomes: DeliveryOutcome) -> None:
        self.outcomes = list(outcomes)

    async def send(self, message: OutboxMessage) -> DeliveryOutcome:
        return self.outcomes.pop(0)


def test_latency_of_attempts_made_by_another_process_is_exposed(client, engine) -> None:
    enqueue_mllp(engine, ["M1", "M2"])
    sender = Scripted(DeliveryOutcome("retry", detail="AR", latency_ms=4.0),
                      DeliveryOutcome("delivered", ack_code="AA", latency_ms=20.0),
                      DeliveryOutcome("delivered", ack_code="AA", latency_ms=30.0))
    worker = DeliveryWorker(engine, lambda d: sender, settings=FAST)  # no on_outcome: not this app's worker
    for _ in range(3):
        asyncio.run(worker.deliver_head("site-a/mllp"))
        asyncio.run(asyncio.sleep(FAST.retry.max_delay_s))
    text = client.get("/metrics").text
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    delivered = '{destination="site-a/mllp",outcome="delivered"}'
    retried = '{destination="site-a/mllp",outcome="retry"}'
    assert float(lines[f"cgt_delivery_latency_seconds_count{delivered}"]) == 2
    assert abs(float(lines[f"cgt_delivery_latency_seconds_sum{delivered}"]) - 0.050) < 1e-9
    assert float(lines[f"cgt_delivery_latency_seconds_count{retried}"]) == 1
    assert abs(float(lines[f"cgt_delivery_latency_seconds_sum{retried}"]) - 0.004) < 1e-9
