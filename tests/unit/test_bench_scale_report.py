"""The scale part's rows in the results table (``bench/report.py``): figures beside the 1-process run of the
same run, the ratio against the target, misses and non-2xx answers shown, a skipped database said."""

from __future__ import annotations

from typing import Any

from bench.report import markdown

SHARED = "the load generator, PostgreSQL and the server processes share this machine's 2 CPUs"


def _run(processes: int, per_s: float, p50: float, p99: float, statuses: dict[str, int]) -> dict[str, Any]:
    return {"processes": processes, "server_pids": processes + (processes > 1),
            "saturation": {"per_s": per_s, "p50_ms": p50, "p99_ms": p99, "statuses": statuses},
            "peak_rss_mb": 140.0, "load_average_1m": [1.5, 2.25], "database_bytes": [1000, 5000],
            "events_stored": 10}


def _scale(one: float, two: float, met: bool, non_2xx: dict[str, int]) -> dict[str, Any]:
    return {"scale": {"postgresql": {
        "concurrency": 8, "seconds": 10, "runs": {"1": _run(1, one, 40.0, 90.0, {"201": 900}),
                                                  "2": _run(2, two, 25.0, 60.0, {"201": 1500, **non_2xx})},
        "ratio_events_per_s": round(two / one, 3), "ratio_p99": round(60.0 / 90.0, 3),
        "bytes_per_event": 23211, "target": {"ratio_events_per_s": 1.6}, "met": met, "non_2xx": non_2xx,
        "shared_cores": SHARED}}}


def test_scale_rows_show_both_runs_the_ratio_and_the_target() -> None:
    table = markdown(_scale(90.0, 162.0, True, {}))
    assert ("| Scale (postgresql): ingest events/s, 8 concurrent clients, `serve --processes 2` vs "
            f"`--processes 1` ({SHARED}) | 162.0 | "
            "90.0 (`--processes 1`, fresh database, same workload) | 1.80 | >= 1.6 | **met** |") in table
    assert "1.5 -> 2.25 (1), 1.5 -> 2.25 (2) | 25.0 / 60.0 ms | 40.0 / 90.0 ms | 0.67 |" in table
    assert "| Scale (postgresql): database growth per accepted event (both runs) | 23,211 bytes |" in table
    assert "Peak RSS of any gateway server or worker process in the run | 140.0 MB |" in table


def test_a_missed_ratio_and_errors_are_shown() -> None:
    table = markdown(_scale(90.0, 100.0, False, {"503": 3}))
    assert "| 100.0 (non-2xx: {'503': 3}) |" in table and "| 1.11 | >= 1.6 | **missed** |" in table


def test_a_skipped_database_is_said() -> None:
    table = markdown({"scale": {"postgresql": {"skipped": "disabled (--no-pg)"}}})
    assert "| Scale (postgresql) | skipped | disabled (--no-pg) |" in table
