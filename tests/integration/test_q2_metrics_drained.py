"""A drained queue still reports its depth (0) and oldest-pending age (0): a series that vanishes when
the queue empties reads as "no data" on a dashboard and cannot be alerted on."""

from __future__ import annotations

import asyncio

from adapters.delivery_result import DeliveryOutcome
from gateway.delivery.outbox import OutboxMessage
from gateway.delivery.worker import DeliveryWorker
from gateway.metrics import GatewayMetrics
from tests.integration.test_delivery_support import FAST, enqueue_mllp, enqueue_raw


class Delivered:
    async def send(self, message: OutboxMessage) -> DeliveryOutcome:
        return DeliveryOutcome("delivered", ack_code="AA", latency_ms=1.0)


def test_a_drained_destination_reports_zero_depth_and_zero_age(client, engine, clock) -> None:
    enqueue_mllp(engine, ["M1"])
    enqueue_raw(engine, "site-a/fhir", "fhir", [("B-1", "{}")], content_type="application/fhir+json")
    worker = DeliveryWorker(engine, lambda d: Delivered(), settings=FAST)
    assert asyncio.run(worker.deliver_head("site-a/mllp")) is True
    client.app.state.metrics = GatewayMetrics(engine, clock)
    text = client.get("/metrics").text
    assert 'cgt_outbox_messages{destination="site-a/mllp",state="delivered"} 1.0' in text
    assert 'cgt_outbox_messages{destination="site-a/mllp",state="pending"} 0.0' in text
    assert 'cgt_outbox_oldest_pending_age_seconds{destination="site-a/mllp"} 0.0' in text
    # the destination still waiting keeps its real figures, reported once
    assert text.count('cgt_outbox_messages{destination="site-a/fhir",state="pending"}') == 1
    assert 'cgt_outbox_messages{destination="site-a/fhir",state="pending"} 1.0' in text
    assert text.count('cgt_outbox_oldest_pending_age_seconds{destination="site-a/fhir"}') == 1
