"""The benchmark harness works (``python -m bench --tiny``): no timing is asserted here, only that a
run produces the result JSON and the Markdown table in the documented shape."""

from __future__ import annotations

import json
from pathlib import Path

from bench.__main__ import main
from bench.record import NOTES_MARKER, write_results_md
from bench.report import markdown
from bench.stats import percentile, ratio, summary


def test_tiny_translation_run_writes_results(tmp_path: Path) -> None:
    assert main(["--tiny", "--parts", "translation", "--no-pg", "--output-dir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "latest.json").read_text())
    assert result["mode"] == "tiny"
    assert result["postgresql"].startswith("skipped")
    assert {"nproc", "cpu", "python", "sqlite"} <= set(result["machine"])
    translation = result["translation"]
    assert translation["events"] > 0 and translation["events_per_s"] > 0
    assert translation["baseline"]["events_per_s"] > 0
    assert translation["baseline"]["hl7apy_byte_mismatches"] == 0  # hl7apy built the very same bytes
    # the ratio is of the unrounded rates; the rates are stored rounded to 0.1, so the ratio lies within
    # what those roundings allow (at a baseline of a few events/s on a loaded machine that is wide)
    gateway_rate, baseline_rate = translation["events_per_s"], translation["baseline"]["events_per_s"]
    low = (gateway_rate - 0.05) / (baseline_rate + 0.05)
    high = (gateway_rate + 0.05) / max(baseline_rate - 0.05, 1e-9)
    assert low - 0.0005 <= translation["ratio"] <= high + 0.0005  # the ratio itself is rounded to 0.001
    assert translation["target"] == {"events_per_s": 1000}
    assert isinstance(translation["met"], bool)
    table = (tmp_path / "latest.md").read_text()
    assert table.startswith("| Figure | Gateway | Baseline (same run) | Ratio | Target |")
    assert "Translation, events/s" in table


def test_unknown_part_is_refused(tmp_path: Path, capsys: object) -> None:
    import pytest

    with pytest.raises(SystemExit) as exit_info:
        main(["--tiny", "--parts", "translation,warp-drive", "--output-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert not (tmp_path / "latest.json").exists()


def test_stats() -> None:
    samples = [float(x) for x in range(1, 101)]
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 99) == 99.0
    assert percentile([], 50) is None
    assert summary(samples, 2.0)["per_s"] == 50.0
    assert ratio(3.0, 0.0) is None and ratio(None, 1.0) is None and ratio(1.0, 4.0) == 0.25


def test_skipped_database_is_shown_and_misses_are_marked() -> None:
    result = {
        "ingest": {"postgresql": {"skipped": "OperationalError: connection refused"}},
        "translation": {
            "events_per_s": 210.0, "resources_per_event": 8.4, "messages_per_event": 1.2, "ratio": 7.3,
            "met": False, "baseline": {"events_per_s": 28.8},
        },
    }
    table = markdown(result)
    assert "| Ingest (postgresql) | skipped | OperationalError: connection refused |" in table
    assert "**missed**" in table


def test_record_keeps_the_notes(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text(f"old figures\n{NOTES_MARKER}\n## Notes\nhand-written analysis\n")
    result = {"mode": "default", "started_at": "2026-11-21T23:00:00+00:00", "total_s": 300.0,
              "machine": {"nproc": 2, "cpu": "AMD EPYC", "memory": "23.5 GiB", "python": "3.11.7",
                          "sqlite": "3.45", "postgresql": "16.1", "platform": "Linux"}}
    write_results_md(path, result, "| table |\n")
    text = path.read_text()
    assert "old figures" not in text
    assert "| table |" in text and "2 CPUs (`nproc`), AMD EPYC" in text
    assert text.endswith("## Notes\nhand-written analysis\n")
