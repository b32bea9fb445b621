"""Part 6: scale-out on PostgreSQL: ingest through ``cgt-gateway serve --processes 1`` and ``--processes 2``.

The same workload and load generator as the ingest part (:mod:`bench.ingest`, :mod:`bench.loadgen`):
``concurrency`` manufacturers posting whole journeys back to back, closed loop, for ``seconds``; each
server on a fresh database (schema ``public`` dropped and recreated), warmed up first on other
orders.  Recorded for each process count: events/s, p50/p99, the HTTP statuses (every one must be
2xx), the peak RSS of each server process, the 1-minute load average before and after, and the
database's size before and after with the events stored (``bytes_per_event``: its growth over the
events accepted, for sizing storage).  The ratio
is the 2-process rate over the 1-process rate of the same run; the target (issue 17) is >= 1.6.

Honesty about the machine: the load generator, PostgreSQL and the server processes all run on the
same host, so on a 2-core machine two server processes do not get two cores to themselves; the
result records ``nproc`` beside the figure.  PostgreSQL only: ``serve --processes N`` refuses N > 1
on SQLite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.ingest import ACME, run_loadgen
from bench.servers import (
    ROOT,
    SERVER_HTTP,
    SERVER_LOOP,
    Server,
    descendants,
    free_port,
    peak_rss_mb,
    reset_postgres,
)
from bench.stats import ratio
from bench.workload import loadgen_journeys

__all__ = ["run_scale", "TARGET_RATIO", "PROCESS_COUNTS"]

TARGET_RATIO = 1.6
STARTUP_S = 300.0
PROCESS_COUNTS = (1, 2)


@contextmanager
def _serve(database_url: str, workdir: Path, processes: int) -> Iterator[Server]:
    """``cgt-gateway serve --processes N --no-worker`` (the delivery worker is not what is measured;
    the demo configuration delivers site-b's messages to a peer that is not running) on a free port."""
    port = free_port()
    script = Path(sys.executable).parent / "cgt-gateway"
    fallback = [sys.executable, "-c", "from gateway.cli.main import app; app()"]
    cmd = [str(script)] if script.exists() else fallback
    env = {
        "CGT_GATEWAY_DATABASE_URL": database_url,
        "CGT_GATEWAY_LOG_LEVEL": "WARNING",
        "CGT_GATEWAY_PORT": str(port),
        "CGT_GATEWAY_SERVER_LOOP": SERVER_LOOP,
        "CGT_GATEWAY_SERVER_HTTP": SERVER_HTTP,
        "CGT_GATEWAY_INBOUND_MLLP_ENABLED": "false",  # the demo's site-a would bind 2575
    }
    args = [*cmd, "serve", "--processes", str(processes), "--no-worker"]
    log_path = workdir / f"gateway-{processes}p-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=ROOT)
    server = Server(f"gateway-{processes}p", port, process, log_path)
    try:
        # a fresh database is migrated first, then each process imports the app: on a loaded 2-core
        # machine that took 30 to 60 s, so the start may take up to STARTUP_S
        deadline = time.monotonic() + STARTUP_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{server.kind} exited: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(server.base_url + "/readyz", timeout=5.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                tail = log_path.read_text()[-2000:]
                raise RuntimeError(f"{server.kind} not ready after {STARTUP_S} s: {tail}")
            time.sleep(0.2)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _server_processes(server: Server, expected: int, timeout_s: float = 60.0) -> list[int]:
    """The pids serving requests: the parent alone for one process, else its descendants once
    ``expected`` of them run (the parent of ``--processes N`` supervises N serving children)."""
    deadline = time.monotonic() + timeout_s
    while True:
        children = descendants(server.process.pid)
        if expected == 1 or len(children) >= expected or time.monotonic() > deadline:
            return [server.process.pid, *children]
        time.sleep(0.1)


def _size_and_events(database_url: str) -> tuple[int, int]:
    """(``pg_database_size`` in bytes, accepted events) of the benchmark database."""
    import sqlalchemy as sa

    from gateway.store.db import make_engine

    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            size = conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one()
            events = conn.execute(sa.text("SELECT count(*) FROM order_event")).scalar_one()
    finally:
        engine.dispose()
    return int(size), int(events)


def _measure(server: Server, database_url: str, processes: int, *, seconds: float, concurrency: int,
             settle_s: float, first: int) -> dict[str, Any]:
    pids = _server_processes(server, processes)
    time.sleep(settle_s)  # every process has imported the app and opened its pool before the clock runs
    size_empty, _ = _size_and_events(database_url)
    per_journey = len(loadgen_journeys(0, 1, "X")[0]["events"]) + 1
    run_loadgen({
        "scenario": "journeys",
        "port": server.port,
        "headers": ACME,
        "concurrency": concurrency,  # warm-up: reaches every process, fills their caches
        "max_seconds": max(1.0, seconds / 5),
        "max_requests": 4 * concurrency * per_journey,
        "journeys": loadgen_journeys(900_000 + first, 4 * concurrency, "WARM"),
    })
    load_before = round(os.getloadavg()[0], 2)
    saturation = run_loadgen({
        "scenario": "journeys",
        "port": server.port,
        "headers": ACME,
        "concurrency": concurrency,
        "max_seconds": seconds,
        "max_requests": 10**9,
        # enough distinct journeys for the time budget at up to 2,000 events/s
        "journeys": loadgen_journeys(first, int(seconds * 2000 / per_journey) + concurrency, "SCALE"),
    })
    load_after = round(os.getloadavg()[0], 2)
    rss = [x for x in (peak_rss_mb(pid) for pid in pids) if x]
    size, events = _size_and_events(database_url)
    return {
        "database_bytes": [size_empty, size],
        "events_stored": events,
        "processes": processes,
        "server_pids": len(pids),
        "saturation": saturation,
        "peak_rss_mb": max(rss) if rss else None,
        "load_average_1m": [load_before, load_after],
    }


def _bytes_per_event(runs: dict[str, Any]) -> int | None:
    grown = sum(r["database_bytes"][1] - r["database_bytes"][0] for r in runs.values())
    events = sum(r["events_stored"] for r in runs.values())
    return round(grown / events) if events else None


def run_scale(workdir: Path, pg_url: str | None, *, seconds: float, concurrency: int,
              settle_s: float = 2.0) -> dict[str, Any]:
    """``{"postgresql": {...}}``: the figures of ``--processes 1`` and ``2``, their ratio and the target
    (the caller marks the part skipped when PostgreSQL is not available)."""
    if not pg_url:
        return {}
    runs: dict[str, Any] = {}
    for n, processes in enumerate(PROCESS_COUNTS):
        reset_postgres(pg_url)
        with _serve(pg_url, workdir, processes) as server:
            runs[str(processes)] = _measure(server, pg_url, processes, seconds=seconds,
                                            concurrency=concurrency, settle_s=settle_s, first=n * 100_000)
    one, two = runs["1"]["saturation"], runs["2"]["saturation"]
    rate_ratio = ratio(two["per_s"], one["per_s"])
    errors = {k: v for run in runs.values() for k, v in run["saturation"]["statuses"].items()
              if k.isdigit() and not k.startswith("2")}
    return {"postgresql": {
        "concurrency": concurrency,
        "seconds": seconds,
        "runs": runs,
        "ratio_events_per_s": rate_ratio,
        "ratio_p99": ratio(two["p99_ms"], one["p99_ms"]),
        # storage: the database's growth (tables and indexes; WAL not counted) over the events accepted
        "bytes_per_event": _bytes_per_event(runs),
        "target": {"ratio_events_per_s": TARGET_RATIO},
        "met": bool(rate_ratio is not None and rate_ratio >= TARGET_RATIO and not errors),
        "non_2xx": errors,
        "shared_cores": (f"the load generator, PostgreSQL and the server processes share this machine's "
                         f"{os.cpu_count()} CPUs"),
    }}
