"""Destination leases: one worker at a time per destination, expiry when a worker dies, and a send
abandoned when its lease is lost."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session

from adapters.retry import RetryPolicy
from gateway.delivery.lease import acquire_lease, give_back_lease, release_lease, take_lease
from gateway.delivery.outbox import DestinationLease, MessageState
from gateway.delivery.senders import DestinationSenders
from gateway.delivery.worker import DeliveryWorker, WorkerSettings
from tests.integration.test_delivery_support import (
    FAST,
    Peer,
    all_finished,
    attempts,
    enqueue_mllp,
    messages,
    site_profile,
    wait_until,
)


def test_a_lease_is_exclusive_until_it_expires(engine) -> None:
    now = datetime.now(UTC)
    with Session(engine) as session:
        assert acquire_lease(session, "site-a/mllp", "w1", now, 10)
        assert not acquire_lease(session, "site-a/mllp", "w2", now, 10)
        assert acquire_lease(session, "site-a/mllp", "w1", now + timedelta(seconds=5), 10)  # renewal
        assert not acquire_lease(session, "site-a/mllp", "w2", now + timedelta(seconds=14), 10)
        assert acquire_lease(session, "site-a/mllp", "w2", now + timedelta(seconds=16), 10)  # w1 died
        assert not acquire_lease(session, "site-a/mllp", "w1", now + timedelta(seconds=17), 10)
        assert acquire_lease(session, "site-b/mllp", "w1", now, 10)  # destinations are independent
        release_lease(session, "site-a/mllp", "w1")  # not w1's any more: nothing happens
        assert not acquire_lease(session, "site-a/mllp", "w3", now + timedelta(seconds=17), 10)
        release_lease(session, "site-a/mllp", "w2")
        assert acquire_lease(session, "site-a/mllp", "w3", now + timedelta(seconds=17), 10)


def test_the_workers_one_statement_lease_has_the_same_rules(engine) -> None:
    """``take_lease`` (the worker's hot path: one INSERT ... ON CONFLICT) behaves as ``acquire_lease``,
    and both see the same rows."""
    now = datetime.now(UTC)
    with engine.connect() as conn:
        def take(destination: str, owner: str, seconds_later: float) -> bool:
            held = take_lease(conn, destination, owner, now + timedelta(seconds=seconds_later), 10)
            conn.commit()
            return held

        assert take("site-a/mllp", "w1", 0)
        assert not take("site-a/mllp", "w2", 0)
        assert take("site-a/mllp", "w1", 5)  # renewal
        assert not take("site-a/mllp", "w2", 14)
        assert take("site-a/mllp", "w2", 16)  # w1 died
        assert not take("site-a/mllp", "w1", 17)
        assert take("site-b/mllp", "w1", 0)  # destinations are independent
        give_back_lease(conn, "site-a/mllp", "w1")  # not w1's any more: nothing happens
        conn.commit()
        with Session(engine) as session:
            assert not acquire_lease(session, "site-a/mllp", "w3", now + timedelta(seconds=17), 10)
        give_back_lease(conn, "site-a/mllp", "w2")
        conn.commit()
        assert take("site-a/mllp", "w3", 17)



def test_two_workers_on_one_destination_never_send_at_the_same_time(engine, peers) -> None:
    peer = Peer(peers, delay_s=0.003).start()
    expected = [f"M{i:03d}" for i in range(60)]
    stops = []
    for name in ("w1", "w2"):
        senders = DestinationSenders({"site-a": site_profile(mllp_port=peer.port)})
        worker = DeliveryWorker(engine, senders, settings=FAST, worker_id=name, close_senders=senders.aclose)
        stops.append(worker.run_in_thread())
    try:
        for start in range(0, 60, 10):  # the queue drains between batches, so the lease changes hands
            enqueue_mllp(engine, expected[start:start + 10])
            wait_until(lambda: all_finished(engine), "batch delivered")
    finally:
        for stop in stops:
            stop()
    assert peer.received == expected and peer.overlaps == 0
    assert all(m.attempts == 1 for m in messages(engine))


def test_a_worker_that_loses_its_lease_mid_send_abandons_the_attempt(engine, peers) -> None:
    received = threading.Event()
    peer = Peer(peers, script=["late"], late_s=1.0).start()
    peer.on_receive = lambda cid: received.set()
    enqueue_mllp(engine, ["M1"])
    settings = WorkerSettings(lease_seconds=0.6, poll_interval_s=0.01, db_error_pause_s=0.02,
                              retry=RetryPolicy(initial_s=0.02, max_delay_s=0.1, jitter_s=0.0))
    senders = DestinationSenders({"site-a": site_profile(mllp_port=peer.port, read_timeout_s=3.0)})
    worker = DeliveryWorker(engine, senders, settings=settings, worker_id="w1", close_senders=senders.aclose)
    stop = worker.run_in_thread()
    try:
        wait_until(received.is_set, "M1 sent")
        with Session(engine) as session:  # an operator (or a clock gone wrong) hands the lease to another
            session.execute(update(DestinationLease).values(
                owner="w2", expires_at=datetime.now(UTC) + timedelta(hours=1)))
            session.commit()
        wait_until(lambda: peer.connections >= 1 and peer.in_flight == 0, "w1 dropped its connection")
    finally:
        stop()
    [m1] = messages(engine)
    assert m1.state == MessageState.pending and attempts(engine, m1.id) == []  # w2 will resend it
