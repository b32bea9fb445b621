"""From the API to the site engine: an order and an event accepted over HTTP put HL7v2 messages in
the site's outbox (same transaction), and the worker built from the configuration
(``build_delivery_worker``) delivers them to a real MLLP peer, in order, with their MSH-10."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from gateway.bootstrap import create_app
from gateway.config import load_settings
from gateway.delivery.outbox import MessageState
from gateway.delivery.senders import build_delivery_worker
from gateway.metrics import GatewayMetrics
from tests.conftest import (
    ACME,
    ADMIN,
    TestClient,  # imported there with the httpx deprecation warning silenced
    event_body,
    order_body,
)
from tests.integration.test_delivery_support import (
    FAST,
    Peer,
    PeerLoop,
    all_finished,
    messages,
    wait_until,
    write_config,
)


def test_accepted_events_reach_the_site_engine_in_order(engine: Engine, tmp_path: Path) -> None:
    peers = PeerLoop()
    try:
        site_a, site_b = Peer(peers).start(), Peer(peers).start()
        config = write_config(tmp_path, engine.url.render_as_string(hide_password=False),
                              {"site-a": site_a.port, "site-b": site_b.port}, demo_clients=True)
        settings = load_settings(config)
        app = create_app(settings, engine=engine)
        metrics = GatewayMetrics(engine)
        app.state.metrics = metrics
        with TestClient(app, raise_server_exceptions=False) as client:
            assert client.post("/v1/orders", json=order_body("ORD-77"), headers=ACME).status_code == 201
            now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            confirmed = event_body("E1", "order.confirmed", now, {"slot_id": "SLOT-1"})
            response = client.post("/v1/orders/ORD-77/events", json=confirmed, headers=ACME)
            assert response.status_code in (200, 201), response.text
            queued = messages(engine, "site-a/mllp")
            assert queued and all(m.state == MessageState.pending for m in queued)
            worker = build_delivery_worker(settings, engine, worker_settings=FAST)
            stop = worker.run_in_thread()
            try:
                wait_until(lambda: all_finished(engine), "delivered")
            finally:
                stop()
            listed = client.get("/v1/admin/outbox", headers=ADMIN, params={"state": "delivered"}).json()
            text = client.get("/metrics").text
    finally:
        peers.close()
    assert [m.event_id for m in queued] == ["ORD-77:placed", "E1"]
    assert site_a.received == [m.control_id for m in queued]  # FIFO, each once, MSH-10 = control id
    assert site_b.received == []  # another site's engine hears nothing of it
    assert {m.message_type.split("^")[0] for m in queued} <= {"OML", "ORM", "ORU", "SIU"}
    assert [item["control_id"] for item in listed["items"]] == [m.control_id for m in queued]
    assert 'cgt_delivery_latency_seconds_count{destination="site-a/mllp",outcome="delivered"}' in text
