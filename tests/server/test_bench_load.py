"""``parley bench load``: the simulated listener's playback, and users talking at once through serve."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import numpy as np
import pytest

from parley.bench.load import UserResult, UserScript, run_user
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
    url = f"{serve.ws}/api/v1/realtime"
    for turn in await _two_users_one_question_each(lambda script: run_user(url, script)):
        assert turn["responses"] == 1, turn


async def _two_users_one_question_each(run: Callable[[UserScript], Awaitable[UserResult]]) -> list[dict]:
    """Both users asked at once; each got a spoken reply. Their turns."""
    questions = [synthesize("What is the capital of France?"), synthesize("Who wrote Romeo and Juliet?")]
    scripts = [UserScript(user, 1, questions, questions, random.Random(user), 0.0) for user in range(2)]
    results = await asyncio.gather(*(run(script) for script in scripts))
    for result in results:
        assert result.failed is None and not result.refused, result
        assert result.no_reply == 0 and len(result.turns) == 1
        turn = result.turns[0]
        assert 0 < turn["latency_ms"] < 15_000 and turn["reply_s"] > 0.5, turn
    return [result.turns[0] for result in results]


def test_webrtc_ears_find_the_reply_and_its_gaps() -> None:
    from parley.bench.load_webrtc import GAP_SILENCE_S, Ears
    from parley.bench.webrtc_peer import Recording

    frame = 480  # 20 ms at 24 kHz
    voice, quiet = np.full(frame, 3000, dtype=np.int16), np.zeros(frame, dtype=np.int16)
    recording = Recording()
    # 1 s of silence, 1 s of reply, a 0.6 s gap, 1 s more: one frame every 20 ms from t=0.
    frames = [quiet] * 50 + [voice] * 50 + [quiet] * 30 + [voice] * 50
    for i, pcm in enumerate(frames):
        recording.chunks.append(pcm)
        recording.arrivals.append(i * 0.02)
    ears = Ears(recording)
    first = asyncio.run(ears.first_sound(0.5, timeout=0.1))
    assert first == pytest.approx(1.0)
    gaps = ears.gaps(first, 3.6)
    assert gaps["underruns"] == 1 and gaps["underrun_ms"] == pytest.approx(600, abs=1)
    assert gaps["gaps"][0][0] == pytest.approx(1.0)  # a second into the reply
    # Pauses shorter than GAP_SILENCE_S (Piper's between clauses) are not gaps.
    short = int(GAP_SILENCE_S / 0.02) - 2
    recording = Recording(chunks=[voice] * 10 + [quiet] * short + [voice] * 10)
    recording.arrivals = [i * 0.02 for i in range(len(recording.chunks))]
    assert Ears(recording).gaps(0.0, 10.0)["underruns"] == 0


@pytest.mark.models
async def test_two_webrtc_users_at_once_both_hear_spoken_answers(serve: Serve) -> None:
    from parley.bench.load_webrtc import run_webrtc_user

    for turn in await _two_users_one_question_each(lambda script: run_webrtc_user(serve.http, script)):
        assert turn["speech_stopped_ms"] > 0 and turn["responses"] == 1, turn
        # The engine's own stage times came over the data channel (parley_metrics=1).
        assert turn.get("first_audio_sent_ms") is not None, turn
