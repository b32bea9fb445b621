"""Outbox times in the admin API and the CLI views carry their UTC offset on SQLite as on PostgreSQL
(SQLite hands back naive datetimes: they were stored as UTC); they were naive on SQLite only."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from adapters.delivery_result import DeliveryOutcome
from gateway.delivery.outbox import OutboxMessage
from gateway.delivery.worker import DeliveryWorker
from tests.conftest import ADMIN
from tests.integration.test_delivery_support import FAST, enqueue_mllp


class Dead:
    async def send(self, message: OutboxMessage) -> DeliveryOutcome:
        return DeliveryOutcome("dead", ack_code="AE", detail="Unknown product", latency_ms=1.0)


def _zoned(value: str) -> bool:
    return datetime.fromisoformat(value).utcoffset() == timedelta(0)


def test_admin_outbox_and_alert_times_carry_their_zone(client, engine) -> None:
    enqueue_mllp(engine, ["M1"])
    assert asyncio.run(DeliveryWorker(engine, lambda d: Dead(), settings=FAST).deliver_head("site-a/mllp"))
    listed = client.get("/v1/admin/outbox", headers=ADMIN).json()["items"][0]
    shown = client.get(f"/v1/admin/outbox/{listed['id']}", headers=ADMIN).json()
    alert = client.get("/v1/admin/alerts", headers=ADMIN).json()["items"][0]
    times = [listed["next_attempt_at"], listed["created_at"], listed["finished_at"],
             shown["attempt_log"][0]["at"], alert["at"]]
    assert all(_zoned(t) for t in times), times
