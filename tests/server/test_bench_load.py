"""``parley bench load``: the simulated listener's playback, and users talking at once through serve."""

from __future__ import annotations

import asyncio
import random

import pytest

from parley.bench.load import run_user
from parley.bench.speech import synthesize
from parley.bench.spoken_user import BYTES_PER_SECOND, Playback
from tests.support.serve import Serve


def test_playback_counts_gaps_a_listener_would_hear() -> None:
    play = Playback()
    second = BYTES_PER_SECOND
    play.receive(0.0, second)  # 1 s of audio at t=0: plays until t=1
    play.receive(0.5, second)  # ahead of playback: no gap, now plays until t=2
    assert play.underruns == 0 and play.runs_out == pytest.approx(2.0)
    play.receive(2.01, second // 10)  # 10 ms late: jitter, not heard
    assert play.underruns == 0
    play.receive(2.5, second)  # the audio ran out at 2.11: a 390 ms gap
    assert play.underruns == 1 and play.underrun_ms == pytest.approx(390, abs=1)


@pytest.mark.models
async def test_two_users_at_once_both_get_spoken_answers(serve: Serve) -> None:
    questions = [synthesize("What is the capital of France?"), synthesize("Who wrote Romeo and Juliet?")]
    url = f"{serve.ws}/api/v1/realtime"
    results = await asyncio.gather(
        *(run_user(url, user, 1, questions, questions, random.Random(user), 0.0, 30.0) for user in range(2))
    )
    for result in results:
        assert result.failed is None and not result.refused, result
        assert result.no_reply == 0 and len(result.turns) == 1
        turn = result.turns[0]
        assert 0 < turn["latency_ms"] < 15_000 and turn["reply_s"] > 0.5, turn
