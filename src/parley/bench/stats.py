"""Percentiles and summaries shared by the benchmarks."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (``q`` in 0..1) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: Iterable[float | None]) -> dict[str, Any]:
    """n, p50, p95, p99, min, max and mean of the values that are not None."""
    v = [x for x in values if x is not None]
    return {
        "n": len(v),
        "p50": percentile(v, 0.5),
        "p95": percentile(v, 0.95),
        "p99": percentile(v, 0.99),
        "min": min(v) if v else None,
        "max": max(v) if v else None,
        "mean": statistics.fmean(v) if v else None,
    }
