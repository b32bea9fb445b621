"""Two worker processes sharing one PostgreSQL outbox: 1,000 messages to 4 MLLP destinations (4 peers
on loopback).  Each destination receives exactly its messages, in order, once, and never two at a
time (each peer counts messages in flight across all its connections)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from gateway.delivery.outbox import DeliveryAttempt, MessageState, OutboxMessage
from tests.integration.test_delivery_support import (
    Peer,
    PeerLoop,
    enqueue_mllp,
    start_worker_process,
    wait_until,
    write_config,
)

SITES = ("site-a", "site-b", "site-c", "site-d")


def _all_delivered(engine: Engine) -> bool:
    with Session(engine) as session:
        left = session.execute(select(func.count()).select_from(OutboxMessage)
                               .where(OutboxMessage.state != MessageState.delivered)).scalar()
    return left == 0


@pytest.mark.postgres
def test_two_workers_share_the_outbox_without_reordering_or_overlap(engine: Engine, tmp_path: Path) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("several workers share an outbox on PostgreSQL")
    url = engine.url.render_as_string(hide_password=False)
    peers = PeerLoop()
    processes = []
    expected: dict[str, list[str]] = {site: [] for site in SITES}
    try:
        by_site = {site: Peer(peers, delay_s=0.002).start() for site in SITES}
        config = write_config(tmp_path, url, {site: peer.port for site, peer in by_site.items()})
        log = tmp_path / "workers.log"
        processes = [start_worker_process(config, log, lease_seconds=2.0, poll_interval_s=0.05)
                     for _ in range(2)]
        for wave in range(25):  # queues drain between waves, so leases change hands
            for site in SITES:
                ids = [f"{site}-{wave:02d}-{n}" for n in range(10)]
                expected[site].extend(ids)
                enqueue_mllp(engine, ids, destination=f"{site}/mllp")
            wait_until(lambda: _all_delivered(engine), f"wave {wave} delivered", timeout_s=30)
        for process in processes:
            process.send_signal(signal.SIGTERM)
        assert [process.wait(10) for process in processes] == [0, 0]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        peers.close()
    assert sum(len(ids) for ids in expected.values()) == 1000
    for site, peer in by_site.items():
        assert peer.received == expected[site], site  # exactly its messages, in order, once
        assert peer.overlaps == 0, site  # never two in flight at once
    with Session(engine) as session:
        workers = set(session.execute(select(DeliveryAttempt.worker_id).distinct()).scalars())
        attempts = session.execute(select(func.count()).select_from(DeliveryAttempt)).scalar()
    assert len(workers) == 2  # both processes delivered
    assert attempts == 1000
