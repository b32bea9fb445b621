"""The Markdown table of a run: every figure beside its same-run baseline, the ratio, the target."""

from __future__ import annotations

import platform
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["machine", "markdown"]


def machine(pg_version: str | None) -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        nproc = int(subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout)
    except (OSError, ValueError, subprocess.CalledProcessError):
        nproc = 0
    memory = None
    try:
        kb = int(Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1])
        memory = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "nproc": nproc,
        "cpu": cpu,
        "memory": memory,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": pg_version,
        "platform": platform.platform(),
    }


def _f(value: Any, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        text = f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.2f}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return f"{text}{unit}"


def _met(flag: bool | None) -> str:
    return "—" if flag is None else ("**met**" if flag else "**missed**")


def _lat(entry: dict[str, Any]) -> str:
    return f"{_f(entry.get('p50_ms'))} / {_f(entry.get('p99_ms'))} ms"


def markdown(result: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str, str, str]] = []
    rss: list[float] = []

    t = result.get("translation")
    if t:
        b = t["baseline"]
        rows.append(
            (
                f"Translation, events/s (one core; {t['resources_per_event']} resources + "
                f"{t['messages_per_event']} messages an event)",
                _f(t["events_per_s"]),
                f"{_f(b['events_per_s'])} (bare fhir.resources validate+dump, hl7apy object-by-object build)",
                _f(t["ratio"]),
                ">= 1,000",
                _met(t["met"]),
            )
        )
    for db, e in (result.get("ingest") or {}).items():
        if "skipped" in e:
            rows.append((f"Ingest ({db})", "skipped", e["skipped"], "—", "—", "—"))
            continue
        gw, base = e["gateway"], e["baseline"]
        sqlite = db == "sqlite"
        rows.append(
            (
                f"Ingest ({db}), events/s, {e['concurrency']} concurrent clients",
                _f(gw["saturation"]["per_s"]),
                f"{_f(base['saturation']['per_s'])} (minimal FastAPI endpoint, one INSERT)",
                _f(e["ratio_events_per_s"]),
                ">= 500" if sqlite else "—",
                _met(gw["saturation"]["per_s"] >= 500) if sqlite else "—",
            )
        )
        if "one_client" in gw:
            one, base_one = gw["one_client"], base["one_client"]
            rows.append(
                (
                    f"Ingest ({db}), events/s and p50 / p99, one client",
                    f"{_f(one['per_s'])}; {_lat(one)}",
                    f"{_f(base_one['per_s'])}; {_lat(base_one)}",
                    _f(_r(one["per_s"], base_one["per_s"])),
                    "—",
                    "—",
                )
            )
        rows.append(
            (
                f"Ingest ({db}), p50 / p99 at saturation",
                _lat(gw["saturation"]),
                _lat(base["saturation"]),
                _f(_r(gw["saturation"]["p99_ms"], base["saturation"]["p99_ms"])),
                "—",
                "—",
            )
        )
        p99 = gw["at_200_per_s"]["p99_ms"]
        rows.append(
            (
                f"Ingest ({db}), p50 / p99 at a fixed 200 events/s",
                _lat(gw["at_200_per_s"]),
                _lat(base["at_200_per_s"]),
                _f(e["ratio_p99_at_200"]),
                "p99 < 50 ms" if sqlite else "—",
                _met(p99 is not None and p99 < 50) if sqlite else "—",
            )
        )
        rss += [x for x in (gw.get("peak_rss_mb"),) if x]
    for db, e in (result.get("polling") or {}).items():
        if "skipped" in e:
            rows.append((f"Polling ({db})", "skipped", e["skipped"], "—", "—", "—"))
            continue
        tiers = list(e["tiers"])
        for tier in tiers:
            m = e["tiers"][tier]
            n = f"{int(tier):,}"
            empty = m["gateway_empty"]["per_s"]
            rows.append(
                (
                    f"Polling ({db}, {n} Tasks), empty poll requests/s (4 connections)",
                    _f(empty),
                    f"{_f(m['baseline_empty']['per_s'])} (bare indexed SELECT endpoint)",
                    _f(m["ratio_empty_per_s"]),
                    ">= 1,000",
                    _met(empty is not None and empty >= 1000),
                )
            )
            rows.append(
                (
                    f"Polling ({db}, {n} Tasks), empty poll p50 / p99",
                    _lat(m["gateway_empty"]),
                    _lat(m["baseline_empty"]),
                    _f(_r(m["gateway_empty"]["p99_ms"], m["baseline_empty"]["p99_ms"])),
                    "—",
                    "—",
                )
            )
            p99 = m["gateway_page"]["p99_ms"]
            big = int(tier) >= 1_000_000
            rows.append(
                (
                    f"Polling ({db}, {n} Tasks), 100-Task page p50 / p99 (one poller)",
                    _lat(m["gateway_page"]),
                    _lat(m["baseline_page"]),
                    _f(m["ratio_page_p99"]),
                    "p99 < 50 ms at 1M" if big else "(p99 < 50 ms at 1M)",
                    _met(p99 is not None and p99 < 50) if big else "—",
                )
            )
            rss += [x for x in (m.get("gateway_peak_rss_mb"),) if x]
        growth = e["growth_ratio_page_p99"]
        full = int(tiers[-1]) >= 1_000_000
        rows.append(
            (
                f"Polling ({db}), growth of page p99, {int(tiers[-1]):,} / {int(tiers[0]):,} Tasks",
                _f(growth),
                f"the {int(tiers[0]):,}-Task tier, same run",
                _f(growth),
                "<= 1.5 (1M / 10k)",
                _met(growth is not None and growth <= 1.5) + ("" if full else " (not 1M)"),
            )
        )
    d = result.get("delivery")
    if d:
        bare = d["baseline_bare_python_hl7"]
        w = d["worker"]
        rows.append(
            (
                "MLLP delivery, messages/s through the outbox worker (SQLite, FIFO, ACK each)",
                _f(w["per_s"]) + ("" if w["fifo"] and w["complete"] else " (NOT FIFO/complete)"),
                f"{_f(bare['per_s'])} (bare python-hl7 client, one connection)",
                _f(w["ratio"]),
                ">= 0.7 of bare",
                _met(d["met"]["ratio_to_bare"]),
            )
        )
        rows.append(
            (
                "MLLP delivery, messages/s of MllpSender alone (no outbox)",
                _f(d["mllp_sender"]["per_s"]),
                f"{_f(bare['per_s'])} (same)",
                _f(d["mllp_sender"]["ratio"]),
                "—",
                "—",
            )
        )
        for key, label in (
            ("event_to_ack", "worker in serve, default 0.2 s poll"),
            ("event_to_ack_poll_10ms", "standalone worker, 10 ms poll"),
        ):
            lat = d[key]
            rows.append(
                (
                    f"Event accepted to ACK received, empty queue ({label}), p50 / p99",
                    _lat(lat),
                    "—",
                    "—",
                    "p50 < 20 ms" if key == "event_to_ack" else "—",
                    _met(d["met"]["event_to_ack_p50_ms"]) if key == "event_to_ack" else "—",
                )
            )
            rss += [x for x in (lat.get("server_peak_rss_mb"), lat.get("worker_peak_rss_mb")) if x]
        rss += [x for x in (w.get("worker_peak_rss_mb"),) if x]
    for db, e in (result.get("audit") or {}).items():
        if "skipped" in e:
            rows.append((f"Audit trail cost ({db})", "skipped", e["skipped"], "—", "—", "—"))
            continue
        on, off = e["on"], e["off"]
        rows.append(
            (
                f"Audit trail ({db}): ms per ingested event, one client (median of {e['rounds']} rounds)",
                f"{_f(on['ms_per_event'])} ms (audit on); p50 {_f(on['p50_ms'])} ms",
                f"{_f(off['ms_per_event'])} ms (audit off); p50 {_f(off['p50_ms'])} ms",
                _f(e["ratio_cost"]),
                "<= 1.10",
                _met(e["met"]),
            )
        )
        paired = e.get("in_process")
        if paired:
            rows.append(
                (
                    f"Audit trail ({db}): ms per intake call in process, paired, "
                    f"{paired['journeys_each']} journeys each (mean; median)",
                    f"{_f(paired['on']['mean_ms'])}; {_f(paired['on']['median_ms'])} ms (audit on)",
                    f"{_f(paired['off']['mean_ms'])}; {_f(paired['off']['median_ms'])} ms (audit off)",
                    f"{_f(paired['ratio_mean'])}; {_f(paired['ratio_median'])}",
                    "<= 1.10",
                    _met(e.get("met_in_process")),
                )
            )
    for db, e in (result.get("scale") or {}).items():
        if "skipped" in e:
            rows.append((f"Scale ({db})", "skipped", e["skipped"], "—", "—", "—"))
            continue
        one, two = e["runs"]["1"], e["runs"]["2"]
        errors = e.get("non_2xx") or {}
        shared = e.get("shared_cores", "")
        rows.append(
            (
                f"Scale ({db}): ingest events/s, {e['concurrency']} concurrent clients, "
                f"`serve --processes 2` vs `--processes 1` ({shared})",
                _f(two["saturation"]["per_s"]) + (f" (non-2xx: {errors})" if errors else ""),
                f"{_f(one['saturation']['per_s'])} (`--processes 1`, fresh database, same workload)",
                _f(e["ratio_events_per_s"]),
                ">= 1.6",
                _met(e["met"]),
            )
        )
        rows.append(
            (
                f"Scale ({db}): p50 / p99, `--processes 2` vs `--processes 1`; 1-minute load average "
                f"before -> after: {one['load_average_1m'][0]} -> {one['load_average_1m'][1]} (1), "
                f"{two['load_average_1m'][0]} -> {two['load_average_1m'][1]} (2)",
                _lat(two["saturation"]),
                _lat(one["saturation"]),
                _f(e["ratio_p99"]),
                "—",
                "—",
            )
        )
        rows.append(
            (
                f"Scale ({db}): database growth per accepted event (both runs)",
                _f(e.get("bytes_per_event"), " bytes"),
                "—",
                "—",
                "—",
                "—",
            )
        )
        rss += [x for x in (one.get("peak_rss_mb"), two.get("peak_rss_mb")) if x]
    if rss:
        peak = max(rss)
        rows.append(
            (
                "Peak RSS of any gateway server or worker process in the run",
                _f(peak, " MB"),
                "—",
                "—",
                "< 300 MB",
                _met(peak < 300),
            )
        )
    header = "| Figure | Gateway | Baseline (same run) | Ratio | Target | |\n|---|---|---|---|---|---|\n"
    return header + "\n".join("| " + " | ".join(r) + " |" for r in rows) + "\n"


def _r(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return round(value / base, 3)
