"""``bench/RESULTS.md``: the figures of the last recorded run, the machine it ran on, and notes.

Everything above the ``<!-- notes -->`` marker is rewritten by ``python -m bench --record``;
the hand-written analysis below it is kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["write_results_md", "NOTES_MARKER"]

NOTES_MARKER = "<!-- notes: kept by python -m bench --record -->"


def write_results_md(path: Path, result: dict[str, Any], table: str) -> None:
    m = result["machine"]
    notes = ""
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if NOTES_MARKER in text:
            notes = text.split(NOTES_MARKER, 1)[1]
    head = (
        "# Benchmark results\n\n"
        f"Recorded with `python -m bench{' --full' if result['mode'] == 'full' else ''} --record` "
        f"({result['mode']} mode) at commit {result.get('commit', 'unknown')} on {result['started_at']}; "
        f"the run took {result['total_s']} s.\n\n"
        f"Machine: {m['nproc']} CPUs (`nproc`), {m['cpu']}, {m['memory']} RAM; Python {m['python']}; "
        f"SQLite {m['sqlite']}; PostgreSQL {m['postgresql'] or 'not used'} (local, loopback); "
        f"{m['platform']}.\n\n"
        + _load(result)
        + "Each figure is beside a baseline measured in the same run on the same machine; the ratio is "
        "gateway / baseline (for latencies, above 1 means slower than the baseline). Targets are those "
        "of issue 7. Method: `bench/*.py` docstrings and the notes below.\n\n"
    )
    path.write_text(head + table + "\n" + NOTES_MARKER + (notes or "\n"), encoding="utf-8")


def _load(result: dict[str, Any]) -> str:
    loads = result.get("load_average_1m") or {}
    if not loads:
        return ""
    parts = ", ".join(f"{part} {before} -> {after}" for part, (before, after) in loads.items())
    return (
        f"1-minute load average before -> after each part (other work on the machine above the CPU "
        f"count skews the figures): {parts}.\n\n"
    )
