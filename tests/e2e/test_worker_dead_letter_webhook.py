"""A site engine refuses (AE) the order message: it is dead-lettered, the queue moves on, and the
manufacturer hears about it on its signed webhook, with ids and codes only (no patient data)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import yaml
from sqlalchemy.engine import Engine

from adapters.http.webhook import DELIVERY_HEADER, SIGNATURE_HEADER, verify_signature
from gateway.bootstrap import create_app
from gateway.config import load_settings
from gateway.delivery.outbox import MessageState
from gateway.delivery.senders import build_delivery_worker
from tests.conftest import (
    ACME,
    TestClient,  # imported there with the httpx deprecation warning silenced
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

SECRET = "s3cret-for-the-test"


def _with_webhook(config: Path) -> Path:
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    for manufacturer in data["manufacturers"]:
        if manufacturer["id"] == "acme-bio":
            manufacturer["webhook"] = {"url": "https://hooks.acme.example/cgt",
                                       "secret_env": "ACME_HOOK_SECRET"}
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    return config


def test_a_refused_order_message_notifies_the_manufacturer_webhook(engine: Engine, tmp_path: Path) -> None:
    received: list[httpx.Request] = []

    def hook(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(204)

    peers = PeerLoop()
    try:
        site_a, site_b = Peer(peers, script=["AE"]).start(), Peer(peers).start()
        url = engine.url.render_as_string(hide_password=False)
        ports = {"site-a": site_a.port, "site-b": site_b.port}
        config = _with_webhook(write_config(tmp_path, url, ports, demo_clients=True))
        settings = load_settings(config)
        app = create_app(settings, engine=engine)
        with TestClient(app, raise_server_exceptions=False) as client:
            assert client.post("/v1/orders", json=order_body("ORD-AE"), headers=ACME).status_code == 201
        worker = build_delivery_worker(settings, engine, worker_settings=FAST,
                                       environ={"ACME_HOOK_SECRET": SECRET},
                                       http_transport=httpx.MockTransport(hook))
        stop = worker.run_in_thread()
        try:
            wait_until(lambda: all_finished(engine) and len(received) == 1, "dead letter and webhook")
        finally:
            stop()
    finally:
        peers.close()

    site_rows = messages(engine, "site-a/mllp")
    assert [m.state for m in site_rows] == [MessageState.dead]
    hook_rows = messages(engine, "acme-bio/webhook")
    assert [m.state for m in hook_rows] == [MessageState.delivered]

    request = received[0]
    assert verify_signature(SECRET, request.content, request.headers[SIGNATURE_HEADER])
    assert not verify_signature("another secret", request.content, request.headers[SIGNATURE_HEADER])
    body = json.loads(request.content)
    assert body["type"] == "delivery.dead_lettered"
    assert body["delivery_id"] == request.headers[DELIVERY_HEADER] == hook_rows[0].control_id
    assert (body["order_id"], body["site_id"], body["ack_code"]) == ("ORD-AE", "site-a", "AE")
    assert body["control_id"] == site_rows[0].control_id
    patient = order_body()["patient"]
    for phi in (patient["family"], patient["mrn"], patient["birth_date"], *patient["given"]):
        assert phi not in request.content.decode()


def test_no_webhook_configured_means_no_notification_rows(engine: Engine, tmp_path: Path) -> None:
    peers = PeerLoop()
    try:
        site_a, site_b = Peer(peers, script=["AE"]).start(), Peer(peers).start()
        config = write_config(tmp_path, engine.url.render_as_string(hide_password=False),
                              {"site-a": site_a.port, "site-b": site_b.port}, demo_clients=True)
        settings = load_settings(config)
        with TestClient(create_app(settings, engine=engine), raise_server_exceptions=False) as client:
            assert client.post("/v1/orders", json=order_body("ORD-AE2"), headers=ACME).status_code == 201
        stop = build_delivery_worker(settings, engine, worker_settings=FAST).run_in_thread()
        try:
            wait_until(lambda: all_finished(engine), "dead letter")
        finally:
            stop()
    finally:
        peers.close()
    assert [m.state for m in messages(engine, "site-a/mllp")] == [MessageState.dead]
    assert messages(engine, "acme-bio/webhook") == []
