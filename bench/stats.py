"""Small statistics over latency samples (milliseconds) and rates."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["percentile", "summary", "ratio"]


def percentile(samples: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (``pct`` in 0..100); None for no samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(samples_ms: Sequence[float], elapsed_s: float | None = None) -> dict[str, Any]:
    """Count, p50, p99, max (ms) and, given the elapsed time, the rate per second."""
    out: dict[str, Any] = {
        "count": len(samples_ms),
        "p50_ms": _round(percentile(samples_ms, 50)),
        "p99_ms": _round(percentile(samples_ms, 99)),
        "max_ms": _round(max(samples_ms) if samples_ms else None),
    }
    if elapsed_s is not None:
        out["elapsed_s"] = round(elapsed_s, 3)
        out["per_s"] = round(len(samples_ms) / elapsed_s, 1) if elapsed_s > 0 else None
    return out


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None or baseline == 0:
        return None
    return round(value / baseline, 3)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
