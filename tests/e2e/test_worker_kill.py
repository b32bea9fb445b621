"""A standalone worker process (``python -m gateway.cli.outbox worker``, i.e. ``cgt-gateway worker``)
killed with SIGKILL mid-delivery and restarted: every message is delivered, in order, and the only
duplicates are resends of the same MSH-10.  SQLite file database, real MLLP peer on loopback."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from gateway.delivery.outbox import MessageState
from gateway.store.db import make_engine, migrate
from tests.integration.test_delivery_support import (
    Peer,
    PeerLoop,
    enqueue_mllp,
    messages,
    received_in_order_allowing_resends,
    start_worker_process,
    wait_until,
    write_config,
)


def test_sigkill_mid_delivery_then_restart_loses_nothing_and_keeps_order(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gateway.store.db'}"
    engine = make_engine(url)
    migrate(engine)
    expected = [f"M{i:03d}" for i in range(120)]
    enqueue_mllp(engine, expected)
    peers = PeerLoop()
    waiting_for_ack = threading.Event()
    acked_then_killed = threading.Event()
    processes = []
    log = tmp_path / "worker.log"
    try:
        peer = Peer(peers).start()

        def misbehave(control_id: str) -> None:
            if control_id == "M030" and not waiting_for_ack.is_set():
                peer.script.insert(0, "silent")  # sent, never answered: the worker waits for its ACK
                waiting_for_ack.set()
            if control_id == "M080" and not acked_then_killed.is_set():
                acked_then_killed.set()  # answered at once, killed around the time the result is written

        peer.on_receive = misbehave
        config = write_config(tmp_path, url, {"site-a": peer.port})
        processes.append(start_worker_process(config, log))
        wait_until(waiting_for_ack.is_set, "M030 in flight", timeout_s=30)
        os.kill(processes[-1].pid, signal.SIGKILL)
        processes[-1].wait(10)
        processes.append(start_worker_process(config, log))
        wait_until(acked_then_killed.is_set, "M080 sent", timeout_s=30)
        os.kill(processes[-1].pid, signal.SIGKILL)
        processes[-1].wait(10)
        processes.append(start_worker_process(config, log))
        wait_until(lambda: all(m.state == MessageState.delivered for m in messages(engine)), "all delivered",
                   timeout_s=30)
        processes[-1].send_signal(signal.SIGTERM)
        assert processes[-1].wait(10) == 0  # a clean stop on SIGTERM
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        peers.close()
        engine.dispose()
    received = peer.received
    assert received_in_order_allowing_resends(received, expected)
    assert received.count("M030") == 2  # resent after the restart, with the same control id
    assert len(received) - len(expected) <= 2
    output = log.read_text(encoding="utf-8", errors="replace")
    assert "delivery attempt" in output  # the workers did log, and never the message content (PHI)
    assert "O'Brien" not in output and "MRN1" not in output and "PID|" not in output
