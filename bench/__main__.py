"""``python -m bench`` (``make bench``): run the suite, write ``bench/results/latest.json`` and
``latest.md``; ``--record`` also rewrites ``bench/RESULTS.md`` with this run's figures.

Modes: default (about five minutes on 2 cores: 10k and 100k Tasks), ``--full`` (adds the 1 million
Task tier and longer runs), ``--tiny`` (seconds; the smoke test uses it, its figures mean nothing).
The scale part (``serve --processes 1`` vs ``2``) runs on PostgreSQL only.
PostgreSQL figures use ``--pg-url`` (default ``postgresql://postgres@127.0.0.1:5432/bench``, a
database the benchmark owns: its schema is dropped and recreated) and are skipped when it does not
answer or with ``--no-pg``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.report import machine, markdown

PARTS = ("translation", "ingest", "polling", "delivery", "audit", "scale")
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/bench"
HERE = Path(__file__).resolve().parent

MODES: dict[str, dict[str, Any]] = {
    "tiny": {
        "orders": 4,
        "translation_s": 1,
        "baseline_s": 1,
        "ingest_s": 1,
        "rate_s": 1,
        "concurrency": 2,
        "tiers": [300, 600],
        "poll_s": 0.5,
        "messages": 40,
        "journeys": 1,
        "audit_s": 1,
        "audit_rounds": 1,
        "scale_s": 1,
        "scale_concurrency": 2,
        "scale_settle_s": 0.2,
    },
    "default": {
        "orders": 200,
        "translation_s": 10,
        "baseline_s": 8,
        "ingest_s": 10,
        "rate_s": 10,
        "concurrency": 4,
        "tiers": [10_000, 100_000],
        "poll_s": 5,
        "messages": 2000,
        "journeys": 2,
        "audit_s": 8,
        "audit_rounds": 3,
        "scale_s": 10,
        "scale_concurrency": 8,
        "scale_settle_s": 2,
    },
    "full": {
        "orders": 400,
        "translation_s": 20,
        "baseline_s": 15,
        "ingest_s": 20,
        "rate_s": 20,
        "concurrency": 4,
        "tiers": [10_000, 100_000, 1_000_000],
        "poll_s": 10,
        "messages": 5000,
        "journeys": 4,
        "audit_s": 15,
        "audit_rounds": 4,
        "scale_s": 20,
        "scale_concurrency": 8,
        "scale_settle_s": 2,
    },
}


def _pg_version(url: str) -> str | None:
    import sqlalchemy as sa

    from gateway.store.db import make_engine

    engine = make_engine(url, pool_pre_ping=False)
    try:
        with engine.connect() as conn:
            return str(conn.execute(sa.text("SHOW server_version")).scalar())
    finally:
        engine.dispose()


def _commit() -> str:
    """The commit measured: ``git rev-parse`` in a clone, else ``$CGT_BENCH_COMMIT`` (an exported tree)."""
    import subprocess

    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("CGT_BENCH_COMMIT", "unknown")


def run(mode: str, parts: list[str], pg_url: str | None, workdir: Path) -> dict[str, Any]:
    from bench.servers import pg_available

    cfg = MODES[mode]
    pg_skip = "disabled (--no-pg)" if pg_url is None else pg_available(pg_url)
    usable_pg = None if pg_skip else pg_url
    result: dict[str, Any] = {
        "mode": mode,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(_pg_version(usable_pg) if usable_pg else None),
        "commit": _commit(),
        "settings": cfg,
        "postgresql": "used" if usable_pg else f"skipped: {pg_skip}",
        "durations_s": {},
        "load_average_1m": {},
    }
    for part in parts:
        started = time.perf_counter()
        load_before = round(os.getloadavg()[0], 2)  # other work on the machine skews every figure
        print(f"bench: {part} ...", file=sys.stderr, flush=True)
        if part == "translation":
            from bench.translation import run_translation

            result[part] = run_translation(
                orders=cfg["orders"], max_seconds=cfg["translation_s"], baseline_seconds=cfg["baseline_s"]
            )
        elif part == "ingest":
            from bench.ingest import run_ingest

            result[part] = run_ingest(
                workdir,
                usable_pg,
                seconds=cfg["ingest_s"],
                rate_seconds=cfg["rate_s"],
                concurrency=cfg["concurrency"],
            )
        elif part == "polling":
            from bench.polling import run_polling

            result[part] = run_polling(workdir, usable_pg, tiers=cfg["tiers"], seconds=cfg["poll_s"])
        elif part == "delivery":
            from bench.delivery import run_delivery

            result[part] = run_delivery(workdir, messages=cfg["messages"], journeys=cfg["journeys"])
        elif part == "audit":
            from bench.audit import run_audit

            result[part] = run_audit(workdir, usable_pg, seconds=cfg["audit_s"], rounds=cfg["audit_rounds"])
        elif part == "scale":
            from bench.scale import run_scale

            result[part] = run_scale(workdir, usable_pg, seconds=cfg["scale_s"],
                                     concurrency=cfg["scale_concurrency"], settle_s=cfg["scale_settle_s"])
        if part in ("ingest", "polling", "audit", "scale") and not usable_pg:
            result[part]["postgresql"] = {"skipped": pg_skip}
        result["durations_s"][part] = round(time.perf_counter() - started, 1)
        result["load_average_1m"][part] = [load_before, round(os.getloadavg()[0], 2)]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="add the 1 million Task tier, run longer")
    size.add_argument("--tiny", action="store_true", help="seconds-long smoke run (figures mean nothing)")
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}"
    )
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    parser.add_argument("--no-pg", action="store_true", help="skip the PostgreSQL figures")
    parser.add_argument("--output-dir", type=Path, default=HERE / "results")
    parser.add_argument("--record", action="store_true", help="also rewrite bench/RESULTS.md from this run")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown parts: {', '.join(unknown)}")
    mode = "full" if args.full else "tiny" if args.tiny else "default"
    workdir = Path(tempfile.mkdtemp(prefix="cgt-bench-"))
    started = time.perf_counter()
    try:
        result = run(mode, parts, None if args.no_pg else args.pg_url, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result["total_s"] = round(time.perf_counter() - started, 1)
    table = markdown(result)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "latest.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (args.output_dir / "latest.md").write_text(table, encoding="utf-8")
    if args.record:
        from bench.record import write_results_md

        write_results_md(HERE / "RESULTS.md", result, table)
    print(table)
    print(
        f"bench: {mode} run took {result['total_s']} s; results in {args.output_dir / 'latest.json'}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
