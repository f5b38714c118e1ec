"""CpuPriority: background work pauses for urgent work once per stretch of it, never longer."""

from __future__ import annotations

import time

from parley.engine.models.priority import CpuPriority


def test_background_pauses_once_per_stretch_of_urgent_work() -> None:
    priority = CpuPriority(max_pause=0.2)
    t0 = time.perf_counter()
    priority.yield_to_urgent()  # nothing urgent: at once
    assert time.perf_counter() - t0 < 0.05
    with priority.urgent():
        t0 = time.perf_counter()
        priority.yield_to_urgent()  # pauses (up to max_pause)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(10):
            priority.yield_to_urgent()  # the same stretch: carries on beside it
        again = time.perf_counter() - t0
    assert 0.15 < first < 0.5
    assert again < 0.05
    with priority.urgent():  # a new stretch: one more pause
        t0 = time.perf_counter()
        priority.yield_to_urgent()
        assert time.perf_counter() - t0 > 0.15
