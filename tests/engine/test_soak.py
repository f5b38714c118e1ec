"""A short slice of ``parley bench soak`` (fake models): sessions come and go while holding turns,
every turn completes, and afterwards no session, file descriptor, thread or task is left over."""

from __future__ import annotations

from parley.bench.soak import soak


async def test_soak_slice_leaves_nothing_behind() -> None:
    report = await soak(sessions=4, minutes=0.25, per_session=5, every_s=1.0)
    assert report["failed_turns"] == 0, report["failures"]
    assert report["turns"] > 50
    assert report["open_sessions_after"] == 0
    for key in ("fds", "threads", "tasks"):
        assert report["after_close"][key] <= report["baseline"][key], report
    assert report["first_window_turn_ms"] and report["last_window_turn_ms"]
