"""``parley bench webrtc`` against an in-process engine with fake models (shape, not speed)."""

from __future__ import annotations

from parley.bench.webrtc_connect import measure
from tests.webrtc.conftest import engine, released


async def test_connect_benchmark_reports_percentiles() -> None:
    async with engine() as srv:
        report = await measure(connects=3, url=f"{srv.http}/v1/realtime/calls", warmup=1)
        await released(srv.runtime)
    assert report["connects"] == 3 and len(report["runs"]) == 3
    for key in ("post_to_answer_ms", "offer_to_open_ms", "offer_to_session_created_ms", "post_to_open_ms"):
        stats = report["metrics"][key]
        assert stats["n"] == 3 and 0 < stats["p50"] <= stats["p95"] <= stats["max"]
    run = report["runs"][0]
    assert (
        run["post_to_answer_ms"]
        < run["post_to_open_ms"]
        < run["offer_to_open_ms"]
        <= run["offer_to_session_created_ms"]
    )
