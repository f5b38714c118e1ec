"""Short slices of ``parley bench soak``: sessions come and go while holding turns, every turn
completes, and afterwards no session, file descriptor, thread or task is left over."""

from __future__ import annotations

from typing import Any

import pytest

from parley.bench.soak import soak


async def test_soak_slice_leaves_nothing_behind() -> None:
    report = await soak(sessions=4, minutes=0.25, per_session=5, every_s=1.0)
    assert report["failed_turns"] == 0, report["failures"]
    assert report["turns"] > 50
    assert report["open_sessions_after"] == 0
    for key in ("fds", "threads", "tasks"):
        assert report["after_close"][key] <= report["baseline"][key], report
    assert report["first_window_turn_ms"] and report["last_window_turn_ms"]


@pytest.mark.models
async def test_spoken_soak_slice_talks_barges_in_and_leaves_nothing_behind(models: Any) -> None:
    # One spoken session (real models, the page's session): a question streamed in real time,
    # spoken over ~0.5 s into its reply, the interruption's reply heard to the end, then it leaves.
    report = await soak(
        sessions=1,
        spoken=1,
        minutes=1.0,
        spoken_per_session=2,
        barge_in_share=1.0,
        rounds=1,
        models=models,
        every_s=1.0,
    )
    spoken = report["kinds"]["spoken"]
    assert spoken["failed_turns"] == 0, spoken["failures"]
    assert spoken["sessions_opened"] == 1
    assert spoken["turns"] == 2
    assert report["ran_s"] < 55, "the session should have finished on its own"
    # The engine cancelled the reply the user spoke over once it heard the user start, and took
    # the client's truncation to what had been heard.
    assert spoken["barge_ins"] == 1
    (barge,) = spoken["barge_in_rows"]
    assert barge["status"] == "cancelled" and not barge["finished_before_speech_started"], barge
    assert barge["onset_to_speech_started_ms"] < 1000 and barge["speech_started_to_done_ms"] < 1000, barge
    assert barge["truncated"] and barge["heard_ms"] > 0, barge
    turns = spoken["turn_ms"]
    assert 0 < turns["min"] and turns["max"] < 10_000, turns  # true end of speech → first audio
    assert report["open_sessions_after"] == 0
    for key in ("fds", "threads", "tasks"):
        assert report["after_close"][key] <= report["baseline"][key], report
