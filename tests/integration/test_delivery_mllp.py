"""The real DeliveryWorker over a real database, delivering to a real MLLP peer (python-hl7 asyncio
server on loopback) that misbehaves on demand."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine

from gateway.delivery.outbox import MessageState
from gateway.delivery.senders import DestinationSenders
from gateway.delivery.worker import DeliveryWorker, WorkerSettings
from tests.integration.test_delivery_support import (
    FAST,
    FAST_RETRY,
    Peer,
    alerts,
    all_finished,
    attempts,
    enqueue_mllp,
    messages,
    site_profile,
    wait_until,
)


@pytest.fixture
def start_worker(engine: Engine) -> Iterator[Callable[..., DeliveryWorker]]:
    stops: list[Callable[[], None]] = []

    def start(peer: Peer, settings: WorkerSettings = FAST, read_timeout_s: float = 5.0,
              enhanced: bool = False) -> DeliveryWorker:
        profile = site_profile(mllp_port=peer.port, read_timeout_s=read_timeout_s, enhanced=enhanced)
        senders = DestinationSenders({"site-a": profile})
        worker = DeliveryWorker(engine, senders, settings=settings, close_senders=senders.aclose,
                                alert_after=senders.alert_after)
        stops.append(worker.run_in_thread())
        return worker

    yield start
    for stop in stops:
        stop()


def ids(n: int, prefix: str = "M") -> list[str]:
    return [f"{prefix}{i:04d}" for i in range(n)]


def test_normal_delivery_in_order_over_one_connection(engine, peers, start_worker) -> None:
    peer = Peer(peers).start()
    expected = ids(25)
    enqueue_mllp(engine, expected)
    start_worker(peer)
    wait_until(lambda: all_finished(engine), "all delivered")
    assert peer.received == expected
    assert peer.connections == 1
    rows = messages(engine)
    assert [m.control_id for m in rows] == expected
    assert all(m.state == MessageState.delivered and m.attempts == 1 for m in rows)
    attempt = attempts(engine, rows[0].id)
    assert [(a.outcome, a.ack_code) for a in attempt] == [("delivered", "AA")]
    assert attempt[0].latency_ms is not None and attempt[0].worker_id
    assert alerts(engine) == []


def test_peer_down_then_back_drains_the_backlog_in_fifo_order(engine, peers, start_worker) -> None:
    peer = Peer(peers).start()
    port = peer.port
    first = ids(5, "A")
    enqueue_mllp(engine, first)
    start_worker(peer)
    wait_until(lambda: all_finished(engine), "first batch delivered")
    peer.stop()
    backlog = ids(40, "B")
    enqueue_mllp(engine, backlog)
    head = messages(engine)[len(first)]
    wait_until(lambda: len(attempts(engine, head.id)) >= 3, "the head retried while the peer is down")
    rows = messages(engine)
    # the queue is held: only its head was tried, nothing behind it
    assert all(m.attempts == 0 for m in rows[len(first) + 1:])
    assert {a.outcome for a in attempts(engine, head.id)} == {"retry"}
    restarted = Peer(peers).start(port)
    wait_until(lambda: all_finished(engine), "backlog drained")
    assert peer.received == first
    assert restarted.received == backlog  # in order, each once: nothing was half-sent while down
    assert all(m.state == MessageState.delivered for m in messages(engine))


def test_ar_then_aa_is_retried_then_delivered_once(engine, peers, start_worker) -> None:
    peer = Peer(peers, script=["AR", "AA"]).start()
    enqueue_mllp(engine, ["M1", "M2"])
    start_worker(peer)
    wait_until(lambda: all_finished(engine), "delivered")
    assert peer.received == ["M1", "M1", "M2"]  # the same MSH-10 resent, nothing after it meanwhile
    m1, m2 = messages(engine)
    assert m1.state == m2.state == MessageState.delivered
    tried = attempts(engine, m1.id)
    assert [(a.outcome, a.ack_code) for a in tried] == [("retry", "AR"), ("delivered", "AA")]
    assert m1.attempts == 2 and m2.attempts == 1


def test_ae_dead_letters_keeping_the_ack_text_and_the_queue_moves_on(engine, peers, start_worker, caplog):
    caplog.set_level(logging.DEBUG)
    peer = Peer(peers, script=["AE"]).start()
    enqueue_mllp(engine, ["M1", "M2", "M3"])
    start_worker(peer)
    wait_until(lambda: all_finished(engine), "queue finished")
    assert peer.received == ["M1", "M2", "M3"]
    m1, m2, m3 = messages(engine)
    assert m1.state == MessageState.dead and m1.finished_at is not None
    assert "Unknown product CART-XX" in (m1.last_detail or "")
    assert [(a.outcome, a.ack_code) for a in attempts(engine, m1.id)] == [("dead", "AE")]
    assert m2.state == m3.state == MessageState.delivered
    [alert] = alerts(engine)
    assert (alert.kind, alert.message_id, alert.destination) == ("dead-letter", m1.id, "site-a/mllp")
    assert "Unknown product CART-XX" in alert.detail
    # the logs say what happened to which control id, never the ACK text or the message (PHI)
    assert "delivery attempt" in caplog.text or any(r.msg == "delivery attempt" for r in caplog.records)
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "Unknown product" not in logged and "O'Brien" not in logged and "MRN1" not in logged


def test_wrong_msa2_is_not_delivered_but_retried_with_a_warning(engine, peers, start_worker) -> None:
    peer = Peer(peers, script=["wrong-id", "AA"]).start()
    enqueue_mllp(engine, ["M1", "M2"])
    start_worker(peer)
    wait_until(lambda: all_finished(engine), "delivered")
    assert peer.received == ["M1", "M1", "M2"]
    m1 = messages(engine)[0]
    assert [a.outcome for a in attempts(engine, m1.id)] == ["retry", "delivered"]
    [warning] = alerts(engine)
    assert warning.kind == "warning" and warning.message_id == m1.id
    assert "SOMEONE-ELSE" in warning.detail and "not counted as delivered" in warning.detail


def test_no_answer_fires_the_read_deadline_and_retries_without_a_storm(engine, peers, start_worker) -> None:
    peer = Peer(peers, script=["silent", "silent", "silent", "AA"]).start()
    enqueue_mllp(engine, ["M1", "M2"])
    start_worker(peer, read_timeout_s=0.15)
    wait_until(lambda: all_finished(engine), "delivered after the silences")
    assert peer.received == ["M1", "M1", "M1", "M1", "M2"]
    assert peer.connections == 4  # each deadline drops the connection: a late ACK can never be misread
    m1 = messages(engine)[0]
    tried = attempts(engine, m1.id)
    assert [a.outcome for a in tried] == ["retry", "retry", "retry", "delivered"]
    assert all("read deadline" in (a.detail or "") for a in tried[:3])
    # one send per attempt, and each retry waited its backoff (read from the recorded times)
    for n, (before, after) in enumerate(zip(tried, tried[1:], strict=False), start=1):
        assert after.attempted_at - before.attempted_at >= timedelta(seconds=FAST_RETRY.delay(n))
    # the fourth attempt alerts (site profile: max_attempts_before_alert=3) once, not on every retry
    assert [a.kind for a in alerts(engine)] == ["retries-exceeded"]


def test_an_ack_after_the_deadline_causes_one_resend_with_the_same_control_id(engine, peers, start_worker):
    peer = Peer(peers, script=["late", "AA"], late_s=0.4).start()
    enqueue_mllp(engine, ["M1", "M2"])
    start_worker(peer, read_timeout_s=0.15)
    wait_until(lambda: all_finished(engine), "delivered")
    assert peer.received == ["M1", "M1", "M2"]
    m1, m2 = messages(engine)
    assert [a.outcome for a in attempts(engine, m1.id)] == ["retry", "delivered"]
    assert m2.attempts == 1


def test_destinations_proceed_independently(engine, peers) -> None:
    stuck = Peer(peers, default="silent").start()
    fine = Peer(peers).start()
    senders = DestinationSenders({"site-a": site_profile(mllp_port=stuck.port, read_timeout_s=0.1),
                                  "site-b": site_profile("site-b", mllp_port=fine.port)})
    worker = DeliveryWorker(engine, senders, settings=FAST, close_senders=senders.aclose)
    enqueue_mllp(engine, ["A1", "A2"], destination="site-a/mllp")
    enqueue_mllp(engine, ["B1", "B2", "B3"], destination="site-b/mllp")
    stop = worker.run_in_thread()
    try:
        wait_until(lambda: all(m.state == MessageState.delivered for m in messages(engine, "site-b/mllp")),
                   "site-b delivered while site-a is stuck")
    finally:
        stop()
    assert fine.received == ["B1", "B2", "B3"]
    assert set(stuck.received) == {"A1"}
    assert [m.state for m in messages(engine, "site-a/mllp")] == [MessageState.pending] * 2


def test_a_destination_nobody_configured_is_left_for_an_operator(engine, peers, start_worker) -> None:
    peer = Peer(peers).start()
    enqueue_mllp(engine, ["X1"], destination="site-z/mllp")
    enqueue_mllp(engine, ["M1"])
    start_worker(peer)
    wait_until(lambda: messages(engine, "site-a/mllp")[0].state == MessageState.delivered, "site-a delivered")
    [orphan] = messages(engine, "site-z/mllp")
    assert orphan.state == MessageState.pending and orphan.attempts == 0
    assert peer.received == ["M1"]


def test_enhanced_mode_waits_for_the_application_ack(engine, peers, start_worker) -> None:
    peer = Peer(peers, script=["CA+AE", "CA+AA"]).start()
    enqueue_mllp(engine, ["M1", "M2"])
    start_worker(peer, enhanced=True)
    wait_until(lambda: all_finished(engine), "queue finished")
    m1, m2 = messages(engine)
    assert m1.state == MessageState.dead and "Unknown product CART-XX" in (m1.last_detail or "")
    assert [(a.outcome, a.ack_code) for a in attempts(engine, m1.id)] == [("dead", "AE")]
    assert [(a.outcome, a.ack_code) for a in attempts(engine, m2.id)] == [("delivered", "AA")]
    assert peer.received == ["M1", "M2"]
