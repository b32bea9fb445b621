"""Part 2: ingest through the real HTTP server, on SQLite and PostgreSQL, against the baseline.

For each database: the gateway (``cgt-gateway serve``) and the baseline (``bench.baseline_app``: parse
the same JSON, insert one row), each on a fresh database, each driven by the load generator in its
own process with the same journeys:

- saturation: ``concurrency`` manufacturers posting whole journeys back to back (events/s, p50/p99);
- fixed rate: 200 events/s, open loop (p50/p99 from the scheduled send time).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.servers import Server, baseline_server, database_urls, gateway_server, reset_postgres
from bench.stats import ratio
from bench.workload import loadgen_journeys

__all__ = ["run_ingest", "run_loadgen"]

ACME = {"Authorization": "Bearer demo-acme-token"}
TARGET_RATE = 200


def run_loadgen(spec: dict[str, Any], timeout_s: float = 600) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.loadgen"],
        input=json.dumps(spec).encode(),
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _drive(server: Server, *, seconds: float, concurrency: int, rate_seconds: float) -> dict[str, Any]:
    per_journey = len(loadgen_journeys(0, 1, "X")[0]["events"]) + 1
    run_loadgen(
        {
            "scenario": "journeys",
            "port": server.port,
            "headers": ACME,
            "concurrency": 1,  # warm-up
            "max_seconds": 2,
            "max_requests": 2 * per_journey,
            "journeys": loadgen_journeys(900_000, 2, "WARM"),
        }
    )
    one_client = run_loadgen(
        {
            "scenario": "journeys",
            "port": server.port,
            "headers": ACME,
            "concurrency": 1,
            "max_seconds": seconds / 2,
            "max_requests": 10**9,
            "journeys": loadgen_journeys(400_000, int(seconds * 1000 / per_journey) + 1, "ONE"),
        }
    )
    # enough distinct journeys for the time budget at up to 2,000 events/s
    saturation = run_loadgen(
        {
            "scenario": "journeys",
            "port": server.port,
            "headers": ACME,
            "concurrency": concurrency,
            "max_seconds": seconds,
            "max_requests": 10**9,
            "journeys": loadgen_journeys(0, int(seconds * 2000 / per_journey) + concurrency, "SAT"),
        }
    )
    fixed = run_loadgen(
        {
            "scenario": "journeys_rate",
            "port": server.port,
            "headers": ACME,
            "rate": TARGET_RATE,
            "max_seconds": rate_seconds,
            "journeys": loadgen_journeys(500_000, int(rate_seconds * TARGET_RATE / per_journey) + 50, "RATE"),
        }
    )
    return {
        "one_client": one_client,
        "saturation": saturation,
        "at_200_per_s": fixed,
        "peak_rss_mb": server.peak_rss_mb(),
    }


def run_ingest(
    workdir: Path, pg_url: str | None, *, seconds: float, rate_seconds: float, concurrency: int
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for db, url in database_urls(workdir, pg_url, "ingest").items():
        entry: dict[str, Any] = {}
        for kind, start in (("gateway", gateway_server), ("baseline", baseline_server)):
            if db == "postgresql":
                reset_postgres(url)
            else:
                url = str(database_urls(workdir, None, f"ingest-{kind}")["sqlite"])
            with start(url, workdir) as server:
                entry[kind] = _drive(
                    server, seconds=seconds, concurrency=concurrency, rate_seconds=rate_seconds
                )
        entry["concurrency"] = concurrency
        gw, base = entry["gateway"], entry["baseline"]
        rate = gw["saturation"]["per_s"]
        p99_fixed = gw["at_200_per_s"]["p99_ms"]
        entry["ratio_events_per_s"] = ratio(rate, base["saturation"]["per_s"])
        entry["ratio_p99_at_200"] = ratio(p99_fixed, base["at_200_per_s"]["p99_ms"])
        if db == "sqlite":
            entry["target"] = {"events_per_s": 500, "p99_ms_at_200_per_s": 50}
            entry["met"] = bool(rate and rate >= 500 and p99_fixed is not None and p99_fixed < 50)
        results[db] = entry
    return results
