"""Part 5: what the audit trail costs the ingest path (issue 14: at most 10% per ingested event).

For each database: the gateway (``cgt-gateway serve``) with the audit trail on (the default) and off
(``CGT_GATEWAY_AUDIT_ENABLED=false``, the setting that exists for this measurement), each on a fresh
database, driven by the same load generator as the ingest part with ONE client posting whole journeys
(an order, then its events, each in its own request and write transaction).  The two are run in
alternation, ``rounds`` times each (off, on, off, on, ...), so drift on a shared machine falls on
both; the figure per mode is the median of its rounds.

Per-event cost = 1000 / events per second (ms of one request, end to end: HTTP, intake, translation,
the audit append when on).  ``ratio`` = cost on / cost off; the target is ``<= 1.10``.  The p50
latency ratio is given beside it.

On a loaded machine the end-to-end figures swing by more than the audit costs, so the part also
measures **in process, paired**: the intake calls themselves (``accept_order``, ``accept_event``: the
write transaction with its translation, FHIR versions, outbox rows and, when on, the audit append), on
ONE database, alternating journey by journey between a context with the audit on and one with it off
(which goes first alternates too), so load swings fall on both alike.  Its ratio is of the mean time
per call (on / off); the time per call has no HTTP in it, so the same added cost is a larger share of
it: a stricter ratio than the end-to-end one.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench.ingest import ACME, run_loadgen
from bench.servers import database_urls, gateway_server, reset_postgres
from bench.workload import loadgen_journeys

__all__ = ["run_audit", "TARGET_RATIO"]

TARGET_RATIO = 1.10


def _one_client(port: int, seconds: float, first: int, prefix: str) -> dict[str, Any]:
    per_journey = len(loadgen_journeys(0, 1, "X")[0]["events"]) + 1
    run_loadgen({"scenario": "journeys", "port": port, "headers": ACME, "concurrency": 1, "max_seconds": 2,
                 "max_requests": 2 * per_journey,
                 "journeys": loadgen_journeys(first + 90_000, 2, prefix + "W")})
    return run_loadgen({"scenario": "journeys", "port": port, "headers": ACME, "concurrency": 1,
                        "max_seconds": seconds, "max_requests": 10**9,
                        "journeys": loadgen_journeys(first, int(seconds * 1000 / per_journey) + 1, prefix)})


def _in_process(url: str, seconds: float) -> dict[str, Any]:
    """Paired in-process timing of the intake calls, audit on and off, on one database."""
    import time

    from bench.workload import journey_bodies
    from gateway.config import DEMO_CONFIG, load_settings
    from gateway.context import build_context
    from gateway.intake.events import accept_event
    from gateway.intake.orders import accept_order
    from gateway.store.db import make_engine, migrate
    from mappings.events import EventIn
    from mappings.orders import OrderIn

    engine = make_engine(url)
    migrate(engine)
    contexts = {mode: build_context(load_settings(DEMO_CONFIG, database_url=url,
                                                  audit_enabled=mode == "on"), engine)
                for mode in ("off", "on")}
    times: dict[str, list[float]] = {"off": [], "on": []}
    deadline = time.monotonic() + seconds
    n = -4  # four journeys of warm-up (caches, statements), not counted
    try:
        while n < 0 or time.monotonic() < deadline:
            for mode in (("off", "on") if n % 2 == 0 else ("on", "off")):
                number = 800_010 + 2 * n + (mode == "on")  # distinct CoI, MRN, DIN and lots
                bodies = journey_bodies(number, "site-a" if n % 2 == 0 else "site-b", "INP")
                order = OrderIn.model_validate(bodies.order)
                events = [EventIn.model_validate(e) for e in bodies.events]
                context = contexts[mode]
                started = time.perf_counter()
                accept_order(context, "acme-bio", order)
                took = [time.perf_counter() - started]
                for event in events:
                    started = time.perf_counter()
                    accept_event(context, "acme-bio", order.order_id, event)
                    took.append(time.perf_counter() - started)
                if n >= 0:
                    times[mode].extend(took)
            n += 1
    finally:
        engine.dispose()
    out: dict[str, Any] = {"journeys_each": n}
    for mode in ("off", "on"):
        calls = times[mode]
        out[mode] = {"calls": len(calls),
                     "mean_ms": round(1000 * statistics.fmean(calls), 3) if calls else None,
                     "median_ms": round(1000 * statistics.median(calls), 3) if calls else None}
    off, on = out["off"]["mean_ms"], out["on"]["mean_ms"]
    out["ratio_mean"] = round(on / off, 3) if on and off else None
    off, on = out["off"]["median_ms"], out["on"]["median_ms"]
    out["ratio_median"] = round(on / off, 3) if on and off else None
    return out


def run_audit(workdir: Path, pg_url: str | None, *, seconds: float, rounds: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for db, pg in database_urls(workdir, pg_url, "audit").items():
        runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        for n in range(rounds):
            for mode in ("off", "on"):
                if db == "postgresql":
                    reset_postgres(pg)
                    url = pg
                else:
                    url = database_urls(workdir, None, f"audit-{mode}-{n}")["sqlite"]
                env = {"CGT_GATEWAY_AUDIT_ENABLED": "true" if mode == "on" else "false"}
                with gateway_server(url, workdir, worker=False, env=env) as server:
                    runs[mode].append(_one_client(server.port, seconds, 700_000 + n * 10_000,
                                                  f"AUD{mode.upper()}{n}"))
        entry: dict[str, Any] = {"rounds": rounds, "runs": runs}
        for mode in ("off", "on"):
            rates = [r["per_s"] for r in runs[mode] if r.get("per_s")]
            p50s = [r["p50_ms"] for r in runs[mode] if r.get("p50_ms") is not None]
            entry[mode] = {"per_s": round(statistics.median(rates), 1) if rates else None,
                           "ms_per_event": round(1000 / statistics.median(rates), 3) if rates else None,
                           "p50_ms": round(statistics.median(p50s), 3) if p50s else None}
        off, on = entry["off"], entry["on"]
        entry["ratio_cost"] = (round(on["ms_per_event"] / off["ms_per_event"], 3)
                               if on["ms_per_event"] and off["ms_per_event"] else None)
        entry["ratio_p50"] = (round(on["p50_ms"] / off["p50_ms"], 3)
                              if on["p50_ms"] and off["p50_ms"] else None)
        if db == "postgresql":
            reset_postgres(pg)
            url = pg
        else:
            url = database_urls(workdir, None, "audit-paired")["sqlite"]
        entry["in_process"] = _in_process(url, seconds * rounds)
        entry["target_ratio"] = TARGET_RATIO
        entry["met"] = entry["ratio_cost"] is not None and entry["ratio_cost"] <= TARGET_RATIO
        paired = entry["in_process"]["ratio_mean"]
        entry["met_in_process"] = paired is not None and paired <= TARGET_RATIO
        results[db] = entry
    return results
