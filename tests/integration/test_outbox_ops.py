"""Operating the outbox through the admin API: list, show with attempts, replay (same control id,
same FIFO place), skip with a reason, alerts, admin-only access, and ``/metrics``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from adapters.delivery_result import DeliveryOutcome
from gateway.delivery.outbox import MessageState, OutboxMessage, get_message, replay, skip
from gateway.delivery.senders import DestinationSenders
from gateway.delivery.worker import DeliveryWorker
from gateway.metrics import GatewayMetrics
from tests.conftest import ACME, ADMIN, SITE_A
from tests.integration.test_delivery_support import (
    FAST,
    Peer,
    all_finished,
    attempts,
    enqueue_mllp,
    enqueue_raw,
    messages,
    site_profile,
    wait_until,
)


def drain(engine: Engine, peer: Peer) -> None:
    senders = DestinationSenders({"site-a": site_profile(mllp_port=peer.port)})
    stop = DeliveryWorker(engine, senders, settings=FAST, close_senders=senders.aclose).run_in_thread()
    try:
        wait_until(lambda: all_finished(engine), "queue finished")
    finally:
        stop()


def test_replay_of_a_dead_letter_keeps_its_control_id_and_its_fifo_place(client, engine, peers) -> None:
    peer = Peer(peers, script=["AE"]).start()
    enqueue_mllp(engine, ["M1", "M2"])
    drain(engine, peer)
    m1 = messages(engine)[0]
    assert m1.state == MessageState.dead
    enqueue_mllp(engine, ["M3", "M4"])  # queued behind it while it lay dead
    response = client.post(f"/v1/admin/outbox/{m1.id}/retry", headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "pending" and response.json()["control_id"] == "M1"
    drain(engine, peer)
    assert peer.received == ["M1", "M2", "M1", "M3", "M4"]  # the replay goes before what came after it
    replayed = messages(engine)[0]
    assert (replayed.id, replayed.control_id, replayed.state) == (m1.id, "M1", MessageState.delivered)
    assert [(a.outcome, a.ack_code) for a in attempts(engine, m1.id)] == [("dead", "AE"), ("delivered", "AA")]
    again = client.post(f"/v1/admin/outbox/{m1.id}/retry", headers=ADMIN)
    assert again.status_code == 409 and again.json()["code"] == "not-replayable"


def test_skip_needs_a_reason_and_is_recorded(client, engine) -> None:
    enqueue_mllp(engine, ["M1", "M2"])
    m1, m2 = messages(engine)
    for body in ({"reason": ""}, {}, {"reason": "x", "extra": 1}):
        assert client.post(f"/v1/admin/outbox/{m1.id}/skip", headers=ADMIN, json=body).status_code == 422
    response = client.post(f"/v1/admin/outbox/{m1.id}/skip", headers=ADMIN,
                           json={"reason": "duplicate order, confirmed with the site by phone"})
    assert response.status_code == 200
    assert response.json()["state"] == "skipped"
    assert response.json()["skip_reason"] == "duplicate order, confirmed with the site by phone"
    again = client.post(f"/v1/admin/outbox/{m1.id}/skip", headers=ADMIN, json={"reason": "again"})
    assert again.status_code == 409 and again.json()["code"] == "not-skippable"
    missing = client.post("/v1/admin/outbox/999999/skip", headers=ADMIN, json={"reason": "r"})
    assert missing.status_code == 404
    # the queue head is now the next message
    listed = client.get("/v1/admin/outbox", headers=ADMIN, params={"state": "pending"}).json()
    assert [item["id"] for item in listed["items"]] == [m2.id]


def test_skip_and_replay_functions_refuse_what_they_cannot_do(engine) -> None:
    from sqlmodel import Session

    from gateway.errors import Conflict, NotFound

    enqueue_mllp(engine, ["M1"])
    [m1] = messages(engine)
    now = m1.created_at
    with Session(engine) as session:
        with pytest.raises(Conflict) as blank:
            skip(session, m1.id, reason="   ", now=now)
        assert blank.value.code == "reason-required"
        with pytest.raises(Conflict):
            replay(session, m1.id, now=now)  # pending: nothing to replay
        with pytest.raises(NotFound):
            get_message(session, 424242)
        skipped = skip(session, m1.id, reason="withdrawn", now=now)
        assert skipped.state == MessageState.skipped
        assert replay(session, m1.id, now=now).state == MessageState.pending  # a skip can be undone


def test_list_show_and_alerts(client, engine) -> None:
    enqueue_mllp(engine, ["M1", "M2", "M3"])
    enqueue_raw(engine, "site-a/fhir", "fhir", [("B-1", '{"resourceType": "Bundle"}')],
                content_type="application/fhir+json", message_type="transaction")
    rows = messages(engine)
    page = client.get("/v1/admin/outbox", headers=ADMIN,
                      params={"destination": "site-a/mllp", "limit": 2}).json()
    assert [i["control_id"] for i in page["items"]] == ["M1", "M2"] and page["next_after_id"] == rows[1].id
    rest = client.get("/v1/admin/outbox", headers=ADMIN,
                      params={"destination": "site-a/mllp", "after_id": page["next_after_id"]}).json()
    assert [i["control_id"] for i in rest["items"]] == ["M3"] and rest["next_after_id"] is None
    assert client.get("/v1/admin/outbox", headers=ADMIN, params={"state": "bogus"}).status_code == 400
    shown = client.get(f"/v1/admin/outbox/{rows[0].id}", headers=ADMIN).json()
    assert shown["attempt_log"] == [] and "payload" not in shown  # PHI only when asked for
    with_payload = client.get(f"/v1/admin/outbox/{rows[0].id}", headers=ADMIN,
                              params={"payload": "true"}).json()
    assert with_payload["payload"].startswith("MSH|")
    assert client.get("/v1/admin/outbox/999999", headers=ADMIN).status_code == 404
    assert client.get("/v1/admin/alerts", headers=ADMIN).json() == {"items": []}


@pytest.mark.parametrize("method,path", [
    ("GET", "/v1/admin/outbox"), ("GET", "/v1/admin/outbox/1"), ("POST", "/v1/admin/outbox/1/retry"),
    ("POST", "/v1/admin/outbox/1/skip"), ("GET", "/v1/admin/alerts")])
def test_admin_routes_are_admin_only(client, method, path) -> None:
    body = {"reason": "r"} if path.endswith("skip") else None
    assert client.request(method, path, json=body).status_code == 401
    wrong = {"Authorization": "Bearer wrong"}
    assert client.request(method, path, json=body, headers=wrong).status_code == 401
    assert client.request(method, path, json=body, headers=ACME).status_code == 403
    assert client.request(method, path, json=body, headers=SITE_A).status_code == 403


class ScriptedSender:
    def __init__(self, *outcomes: DeliveryOutcome) -> None:
        self.outcomes = list(outcomes)

    async def send(self, message: OutboxMessage) -> DeliveryOutcome:
        return self.outcomes.pop(0)


def test_metrics_show_depth_age_outcomes_and_latency(client, engine, clock) -> None:
    enqueue_mllp(engine, ["M1", "M2", "M3"])
    enqueue_raw(engine, "site-a/fhir", "fhir", [("B-1", "{}")], content_type="application/fhir+json")
    metrics = GatewayMetrics(engine, clock)
    sender = ScriptedSender(DeliveryOutcome("delivered", ack_code="AA", latency_ms=12.0),
                            DeliveryOutcome("retry", detail="connect failed", latency_ms=3.0))
    worker = DeliveryWorker(engine, lambda d: sender, settings=FAST)
    assert asyncio.run(worker.deliver_head("site-a/mllp")) is True
    assert asyncio.run(worker.deliver_head("site-a/mllp")) is True
    client.app.state.metrics = metrics
    clock.set(_aware(messages(engine)[1].created_at) + timedelta(seconds=90))
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'cgt_outbox_messages{destination="site-a/mllp",state="pending"} 2.0' in text
    assert 'cgt_outbox_messages{destination="site-a/mllp",state="delivered"} 1.0' in text
    assert 'cgt_outbox_messages{destination="site-a/fhir",state="pending"} 1.0' in text
    age = next(line for line in text.splitlines()
               if line.startswith('cgt_outbox_oldest_pending_age_seconds{destination="site-a/mllp"}'))
    assert float(age.split()[-1]) >= 90
    assert 'cgt_delivery_attempts_total{destination="site-a/mllp",outcome="delivered"} 1.0' in text
    assert 'cgt_delivery_attempts_total{destination="site-a/mllp",outcome="retry"} 1.0' in text
    assert 'cgt_delivery_latency_seconds_count{destination="site-a/mllp",outcome="delivered"} 1.0' in text
    assert "cgt_outbox_database_up 1.0" in text
    assert "MSH|" not in text and "MRN" not in text


def test_metrics_work_without_an_app_supplied_registry(client, engine) -> None:
    enqueue_mllp(engine, ["M1"])
    text = client.get("/metrics").text
    assert 'cgt_outbox_messages{destination="site-a/mllp",state="pending"} 1.0' in text


def test_message_rows_hold_no_state_outside_the_known_set(engine) -> None:
    enqueue_mllp(engine, ["M1"])
    [row] = messages(engine)
    assert isinstance(row, OutboxMessage) and row.state in {s.value for s in MessageState}


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
