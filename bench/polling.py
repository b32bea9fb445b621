"""Part 3: polling latency as the store grows (10 thousand, 100 thousand, with ``--full`` 1 million Tasks).

The store is seeded directly in bulk (the FHIR store's own tables, one version per Task, with the
same access and search-index rows ``gateway.store.fhir.save_translation`` writes, computed with the
store's own ``index_values``), from a Task the translation produced for the fixture journey.  Half
the Tasks belong to ``site-a``, half to ``site-b``; the poller is ``site-a``.

Measured through the real server, as an EHR polls: the empty poll
``GET /fhir/Task?_lastUpdated=gt<now>&_sort=_lastUpdated&_count=100`` (closed loop, 4 connections:
requests/s, p50/p99) and a 100-Task page ``_lastUpdated=gt<watermark>`` at random watermarks in the
stored range (one poller: p50/p99).  Baseline, same database, same run: ``GET /bare/Task`` of
``bench.baseline_app`` (one indexed SELECT of the stored bodies, no tenant check, no Bundle).
Growth ratio: the page p99 at the largest tier over the 10k tier.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from bench.ingest import run_loadgen
from bench.servers import (
    baseline_server,
    database_urls,
    gateway_server,
    reset_postgres,
    server_implementation,
)
from bench.stats import ratio

__all__ = ["run_polling", "seed_tasks", "template_task"]

SITE_A = {"Authorization": "Bearer demo-site-a-token"}
_BATCH = 2000
_BASE_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
_STEP_US = 1000  # one Task version a millisecond


def template_task() -> dict[str, Any]:
    """The Task the translation produces after the fixture journey's last event (site-a)."""
    from bench.workload import FIXTURES, translation_steps
    from mappings.profile.loader import load_profile
    from mappings.translate import translate
    from terminology import load_terminology

    snapshot, record, _site = translation_steps(1)[-1]
    profile = load_profile(FIXTURES / "profiles" / "site-a.yaml")
    translation = translate(snapshot, record, profile, load_terminology(), datetime.now(UTC))
    return next(r for r in translation.resources if r["resourceType"] == "Task")


def _task(template: bytes, n: int, stamp: int) -> dict[str, Any]:
    from gateway.store.search_params import format_instant

    task: dict[str, Any] = orjson.loads(template)
    order_id = f"SEED-{n:07d}"
    task["id"] = f"seed-task-{n:07d}"
    task["meta"] = {**task.get("meta", {}), "versionId": "1", "lastUpdated": format_instant(stamp)}
    for ident in task.get("identifier", []):
        ident["value"] = order_id
    task["groupIdentifier"]["value"] = f"CHA9999{n:09d}"
    for key in ("focus", "for"):
        if key in task:
            task[key]["reference"] = f"{task[key]['reference']}-{n}"
    return task


def seed_tasks(engine: Any, start: int, count: int) -> int:
    """Insert Tasks ``start`` .. ``start+count-1``; returns the newest ``lastUpdated`` (µs)."""
    import sqlalchemy as sa

    from gateway.store.fhir import FHIR_TABLES, content_hash
    from gateway.store.search_params import index_values

    versions, current, access, tokens, dates, clock = FHIR_TABLES
    template = orjson.dumps(template_task())
    last = 0
    for first in range(start, start + count, _BATCH):
        rows: dict[str, list[dict[str, Any]]] = {"v": [], "c": [], "a": [], "t": [], "d": []}
        for n in range(first, min(first + _BATCH, start + count)):
            stamp = last = _BASE_US + n * _STEP_US
            task = _task(template, n, stamp)
            body = orjson.dumps(task)
            site = "site-a" if n % 2 == 0 else "site-b"
            key = {"resource_type": "Task", "resource_id": task["id"]}
            rows["v"].append(
                {
                    **key,
                    "version_id": 1,
                    "last_updated_us": stamp,
                    "body": body,
                    "site_id": site,
                    "manufacturer_id": "acme-bio",
                    "order_id": f"SEED-{n:07d}",
                }
            )
            rows["c"].append(
                {
                    **key,
                    "version_id": 1,
                    "last_updated_us": stamp,
                    "content_sha256": content_hash(task),
                    "body": body,
                }
            )
            rows["a"] += [
                {**key, "tenant_kind": "site", "tenant_id": site, "last_updated_us": stamp},
                {**key, "tenant_kind": "manufacturer", "tenant_id": "acme-bio", "last_updated_us": stamp},
            ]
            found_tokens, found_dates = index_values(task)
            rows["t"] += [
                {**key, "param": p, "system": s[:255], "value": v[:255]} for p, s, v in found_tokens
            ]
            rows["d"] += [{**key, "param": p, "start_us": lo, "end_us": hi} for p, lo, hi in found_dates]
        pairs = ((versions, "v"), (current, "c"), (access, "a"), (tokens, "t"), (dates, "d"))
        if engine.dialect.name == "postgresql":
            _copy(engine, [(table, rows[name]) for table, name in pairs])
        else:
            with engine.begin() as conn:
                for table, name in pairs:
                    if rows[name]:
                        conn.execute(table.insert(), rows[name])
        with engine.begin() as conn:
            conn.execute(
                clock.update()
                .where(clock.c.id == 1)
                .values(
                    last_us=sa.func.max(clock.c.last_us, last)
                    if engine.dialect.name == "sqlite"
                    else sa.func.greatest(clock.c.last_us, last)
                )
            )
    if engine.dialect.name == "postgresql":
        # what autovacuum would have done by the time a store holds this much: statistics, and the
        # visibility map that lets the poll's index-only scan of the access rows skip the heap
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
    return last


def _copy(engine: Any, batches: list[tuple[Any, list[dict[str, Any]]]]) -> None:
    """PostgreSQL: ``COPY ... FROM STDIN`` (psycopg 3), far faster than INSERTs for bulk seeding."""
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            for table, rows in batches:
                if not rows:
                    continue
                columns = list(rows[0])
                with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row([row[c] for c in columns])
        raw.commit()
    finally:
        raw.close()


def _now_param() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _watermarks(stored: int, samples: int, rng: random.Random) -> list[int]:
    """µs watermarks with at least 400 Tasks after them (so a page of 100 site-a Tasks is full)."""
    return [_BASE_US + rng.randrange(0, max(1, stored - 400)) * _STEP_US for _ in range(samples)]


def _measure(db_url: str, workdir: Path, stored: int, seconds: float) -> dict[str, Any]:
    from gateway.store.search_params import format_instant

    rng = random.Random(stored)
    marks = _watermarks(stored, 500, rng)
    out: dict[str, Any] = {}
    with gateway_server(db_url, workdir) as server:
        empty_path = f"/fhir/Task?_lastUpdated=gt{quote(_now_param())}&_sort=_lastUpdated&_count=100"
        page_paths = [
            f"/fhir/Task?_lastUpdated=gt{quote(format_instant(m))}&_sort=_lastUpdated&_count=100"
            for m in marks
        ]
        run_loadgen(
            {
                "scenario": "get",
                "port": server.port,
                "headers": SITE_A,
                "concurrency": 1,
                "max_seconds": 1,
                "max_requests": 50,
                "paths": [empty_path, *page_paths[:50]],
            }
        )  # warm-up
        out["gateway_empty"] = run_loadgen(
            {
                "scenario": "get",
                "port": server.port,
                "headers": SITE_A,
                "concurrency": 4,
                "max_seconds": seconds,
                "max_requests": 10**9,
                "paths": [empty_path],
            }
        )
        out["gateway_page"] = run_loadgen(
            {
                "scenario": "get",
                "port": server.port,
                "headers": SITE_A,
                "concurrency": 1,
                "max_seconds": seconds,
                "max_requests": 10**9,
                "paths": page_paths,
            }
        )
        out["gateway_peak_rss_mb"] = server.peak_rss_mb()
    with baseline_server(db_url, workdir) as server:
        run_loadgen(
            {
                "scenario": "get",
                "port": server.port,
                "headers": {},
                "concurrency": 1,
                "max_seconds": 1,
                "max_requests": 50,
                "paths": [f"/bare/Task?gt={m}&count=100" for m in marks[:50]],
            }
        )
        now_us = int(time.time() * 1_000_000)
        out["baseline_empty"] = run_loadgen(
            {
                "scenario": "get",
                "port": server.port,
                "headers": {},
                "concurrency": 4,
                "max_seconds": seconds,
                "max_requests": 10**9,
                "paths": [f"/bare/Task?gt={now_us}&count=100"],
            }
        )
        out["baseline_page"] = run_loadgen(
            {
                "scenario": "get",
                "port": server.port,
                "headers": {},
                "concurrency": 1,
                "max_seconds": seconds,
                "max_requests": 10**9,
                "paths": [f"/bare/Task?gt={m}&count=100" for m in marks],
            }
        )
    out["ratio_empty_per_s"] = ratio(out["gateway_empty"]["per_s"], out["baseline_empty"]["per_s"])
    out["ratio_page_p99"] = ratio(out["gateway_page"]["p99_ms"], out["baseline_page"]["p99_ms"])
    return out


def run_polling(workdir: Path, pg_url: str | None, *, tiers: list[int], seconds: float) -> dict[str, Any]:
    from gateway.store.db import make_engine, migrate

    results: dict[str, Any] = {}
    for db, url in database_urls(workdir, pg_url, "polling").items():
        if db == "postgresql":
            reset_postgres(url)
        engine = make_engine(url)
        migrate(engine)
        entry: dict[str, Any] = {"server": server_implementation(), "tiers": {}}  # both servers run on it
        stored = 0
        for tier in tiers:
            started = time.perf_counter()
            seed_tasks(engine, stored, tier - stored)
            seed_s = round(time.perf_counter() - started, 1)
            stored = tier
            measured = _measure(url, workdir, stored, seconds)
            measured["seed_s"] = seed_s
            entry["tiers"][str(tier)] = measured
        engine.dispose()
        first, last = entry["tiers"][str(tiers[0])], entry["tiers"][str(tiers[-1])]
        entry["growth"] = f"{tiers[-1]}/{tiers[0]}"
        entry["growth_ratio_page_p99"] = ratio(
            last["gateway_page"]["p99_ms"], first["gateway_page"]["p99_ms"]
        )
        entry["growth_ratio_empty_p99"] = ratio(
            last["gateway_empty"]["p99_ms"], first["gateway_empty"]["p99_ms"]
        )
        empty_rate = last["gateway_empty"]["per_s"]
        page_p99 = last["gateway_page"]["p99_ms"]
        entry["target"] = {"empty_poll_per_s": 1000, "page_p99_ms_at_1M": 50, "growth_ratio_1M_10k": 1.5}
        entry["met"] = {
            "empty_poll_per_s": bool(empty_rate and empty_rate >= 1000),
            "page_p99_ms": bool(page_p99 is not None and page_p99 < 50),
            "growth_ratio": bool(
                entry["growth_ratio_page_p99"] is not None and entry["growth_ratio_page_p99"] <= 1.5
            ),
            "at_1M": tiers[-1] >= 1_000_000,
        }
        results[db] = entry
    return results
