"""Part 4: MLLP delivery to a loopback python-hl7 peer (``bench.mllp_peer``), FIFO, one ACK per message.

Throughput, the same messages (rendered by the translation, each with its own MSH-10) each time:

- ``worker``: the real delivery worker (``python -m gateway.cli.outbox worker``, default settings)
  draining an outbox queue of N messages enqueued beforehand (SQLite): messages/s between the
  first and the last ACK, and the peer's arrival order checked against the queue's order;
- ``sender``: ``adapters.mllp.client.MllpSender`` alone (no outbox, no database), in a process;
- baseline ``bare``: python-hl7's own asyncio client on one connection, in a process, handed the
  messages as ``hl7.Message`` objects parsed before its clock starts (``bench.mllp_client``);
  ``bare-parse`` (for comparison only) also parses each message inside the timed loop, as this
  benchmark did before: the parse costs about 0.6 ms a message, more than the exchange itself.

Latency: ``cgt-gateway serve`` with its in-process worker (default settings), then ``serve
--no-worker`` with a standalone worker polling every 10 ms, on one SQLite database, the site-a
profile delivering to the peer; events posted one at a time with the queue empty; from the start of
the POST to the ACK of the event's first message (its MSH-10 is deterministic).  The event is
accepted when the POST is answered (its transaction has committed by then), so ``accepted_to_ack``
(from the answer to the ACK; below zero when the ACK came first) is the part after acceptance, and
``post`` the POST itself (the ingest path).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.ingest import ACME
from bench.mllp_peer import Peer
from bench.servers import ROOT, gateway_server, peak_rss_mb
from bench.stats import ratio, summary
from bench.workload import FIXTURES, journey_bodies

__all__ = ["run_delivery", "bench_config"]


def bench_config(workdir: Path, peer_port: int) -> Path:
    """The demo configuration with site-a's profile delivering over MLLP to the peer."""
    from gateway.config import DEMO_CONFIG

    profile = yaml.safe_load((FIXTURES / "profiles" / "site-a.yaml").read_text(encoding="utf-8"))
    profile["delivery"] = {"mllp": {"host": "127.0.0.1", "port": peer_port}}
    profile_path = workdir / "site-a-mllp.yaml"
    profile_path.write_text(yaml.safe_dump(profile, sort_keys=False), encoding="utf-8")
    config = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    for site in config["sites"]:
        site["profile"] = str(
            profile_path if site["id"] == "site-a" else (DEMO_CONFIG.parent / site["profile"]).resolve()
        )
    path = workdir / "gateway-mllp.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _messages(count: int) -> list[tuple[str, str, str]]:
    """``(message_type, control_id, er7)``: site-a's rendered messages, cycled, each its own MSH-10."""
    from bench.translation import _NOW
    from bench.workload import translation_steps
    from mappings.profile.loader import load_profile
    from mappings.translate import translate
    from terminology import load_terminology

    profile = load_profile(FIXTURES / "profiles" / "site-a.yaml")
    terminology = load_terminology()
    rendered = [
        m
        for snapshot, record, site in translation_steps(4)
        if site == "site-a"
        for m in translate(snapshot, record, profile, terminology, _NOW).messages
    ]
    out = []
    for i in range(count):
        message = rendered[i % len(rendered)]
        control_id = f"BENCH{i:015d}"
        fields = message.er7.split("|", 10)
        fields[9] = control_id  # MSH-10
        out.append((message.message_type, control_id, "|".join(fields)))
    return out


def _client(kind: str, port: int, messages: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.mllp_client", kind, str(port)],
        cwd=ROOT,
        input=json.dumps(messages).encode(),
        capture_output=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"mllp client {kind} failed: {done.stderr.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@contextmanager
def _worker(database_url: str, config: Path, workdir: Path, poll_interval: float | None) -> Iterator[Any]:
    cmd = [sys.executable, "-m", "gateway.cli.outbox", "worker", "--config", str(config)]
    if poll_interval is not None:
        cmd += ["--poll-interval", str(poll_interval)]
    env = {**os.environ, "CGT_GATEWAY_DATABASE_URL": database_url, "CGT_GATEWAY_LOG_LEVEL": "WARNING"}
    with (workdir / "worker.log").open("ab") as log:
        process = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _worker_throughput(
    peer: Peer, messages: list[tuple[str, str, str]], workdir: Path, config: Path
) -> dict[str, Any]:
    from gateway.delivery.outbox import NewMessage, enqueue
    from gateway.store.db import make_engine, migrate, write_session

    url = f"sqlite:///{workdir / 'delivery-queue.db'}"
    engine = make_engine(url)
    migrate(engine)
    now = datetime.now(UTC)
    with write_session(engine) as session:
        enqueue(
            session,
            [
                NewMessage(
                    destination="site-a/mllp",
                    channel="mllp",
                    control_id=cid,
                    message_type=mt,
                    content_type="application/hl7-v2",
                    payload=er7,
                )
                for mt, cid, er7 in messages
            ],
            site_id="site-a",
            manufacturer_id="acme-bio",
            order_id="BENCH-QUEUE",
            event_id="bench",
            now=now,
        )
    engine.dispose()
    peer.reset()
    with _worker(url, config, workdir, None) as process:
        complete = peer.wait_for(len(messages), timeout_s=max(60.0, len(messages) / 20))
        rss = peak_rss_mb(process.pid)
    acked = [peer.acked[c] for c in peer.order]
    elapsed = (max(acked) - min(acked)) if len(acked) > 1 else None
    return {
        "sent": len(peer.order),
        "complete": complete,
        "fifo": peer.order == [c for _, c, _ in messages][: len(peer.order)],
        "elapsed_s": round(elapsed, 3) if elapsed else None,
        "per_s": round((len(acked) - 1) / elapsed, 1) if elapsed else None,
        "worker_peak_rss_mb": rss,
    }


def _event_to_ack(
    peer: Peer, workdir: Path, config: Path, journeys: int, poll_interval: float | None, tag: str
) -> dict[str, Any]:
    from mappings.hl7v2.render import control_id

    url = f"sqlite:///{workdir / f'delivery-latency-{tag}.db'}"
    samples: list[float] = []
    post_ms: list[float] = []  # the POST alone (intake, translation, store, outbox row)
    after_ms: list[float] = []  # from the POST's answer to the ACK (worker pick-up and send)
    missing = 0
    peer.reset()
    with contextlib.ExitStack() as stack:
        # poll_interval None: the worker ``cgt-gateway serve`` runs in-process, with its defaults;
        # else ``serve --no-worker`` and a standalone ``worker --poll-interval`` on the same database
        server = stack.enter_context(
            gateway_server(url, workdir, config=config, worker=poll_interval is None)
        )
        worker = stack.enter_context(_worker(url, config, workdir, poll_interval)) if poll_interval else None
        http = stack.enter_context(httpx.Client(base_url=server.base_url))
        warm = journey_bodies(799_000 + (1 if tag != "default" else 0), "site-a", prefix=f"WARM{tag}")
        http.post("/v1/orders", json=warm.order, headers=ACME, timeout=30).raise_for_status()
        peer.wait_for(1, timeout_s=60)  # the worker is up and connected: not part of any sample
        for n in range(journeys):
            bodies = journey_bodies(
                700_000 + n + (100 if tag != "default" else 0), "site-a", prefix=f"ACK{tag}"
            )
            posts = [("/v1/orders", bodies.order, f"{bodies.order_id}:placed")]
            posts += [(f"/v1/orders/{bodies.order_id}/events", e, e["event_id"]) for e in bodies.events]
            for path, body, event_id in posts:
                started = time.perf_counter()
                answer = http.post(path, json=body, headers=ACME, timeout=30)
                answered = time.perf_counter()
                answer.raise_for_status()
                cid = control_id("site-a", "acme-bio", bodies.order_id, event_id, 0)
                deadline = time.perf_counter() + 10
                while cid not in peer.acked and time.perf_counter() < deadline:
                    time.sleep(0.0005)
                if cid in peer.acked:
                    samples.append((peer.acked[cid] - started) * 1000)
                    post_ms.append((answered - started) * 1000)
                    after_ms.append((peer.acked[cid] - answered) * 1000)
                else:
                    missing += 1
                time.sleep(0.05)  # let the queue drain: every event finds it empty
        server_rss = server.peak_rss_mb()
        worker_rss = peak_rss_mb(worker.pid) if worker is not None else None
    return {
        "worker": "standalone, --poll-interval"
        if poll_interval
        else "in-process (cgt-gateway serve defaults)",
        **summary(samples),
        "missing": missing,
        "post_p50_ms": summary(post_ms)["p50_ms"],
        "answer_to_ack_p50_ms": summary(after_ms)["p50_ms"],
        "accepted_to_ack": {k: v for k, v in summary(after_ms).items() if k in ("p50_ms", "p99_ms")},
        "post": {k: v for k, v in summary(post_ms).items() if k in ("p50_ms", "p99_ms")},
        "poll_interval_s": poll_interval or 0.2,
        "server_peak_rss_mb": server_rss,
        "worker_peak_rss_mb": worker_rss,
    }


def run_delivery(workdir: Path, *, messages: int, journeys: int) -> dict[str, Any]:
    batch = _messages(messages)
    payloads = [er7 for _, _, er7 in batch]
    with Peer() as peer:
        config = bench_config(workdir, peer.port)
        peer.reset()
        bare = _client("bare", peer.port, payloads)
        peer.reset()
        bare_parse = _client("bare-parse", peer.port, payloads)
        peer.reset()
        sender = _client("sender", peer.port, payloads)
        worker = _worker_throughput(peer, batch, workdir, config)
        latency_default = _event_to_ack(peer, workdir, config, journeys, None, "default")
        latency_fast = _event_to_ack(peer, workdir, config, journeys, 0.01, "fast")
    worker_ratio = ratio(worker["per_s"], bare["per_s"])
    return {
        "messages": messages,
        "baseline_bare_python_hl7": bare,
        "bare_python_hl7_parsing_in_loop": {**bare_parse, "worker_ratio": ratio(worker["per_s"],
                                                                                bare_parse["per_s"])},
        "mllp_sender": {**sender, "ratio": ratio(sender["per_s"], bare["per_s"])},
        "worker": {**worker, "ratio": worker_ratio},
        "event_to_ack": latency_default,
        "event_to_ack_poll_10ms": latency_fast,
        "target": {"ratio_to_bare": 0.7, "event_to_ack_p50_ms": 20},
        "met": {
            "ratio_to_bare": bool(worker_ratio is not None and worker_ratio >= 0.7),
            "event_to_ack_p50_ms": bool(
                latency_default["p50_ms"] is not None and latency_default["p50_ms"] < 20
            ),
        },
    }
