"""semantic_vad in the session with a scripted end-of-turn model: one call per pause, off the loop.

Audio is fed at real-time pace so the model's answer (a task) lands during the
pause, as it does with a live microphone.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field

import numpy as np

from parley.engine.config import EngineConfig
from parley.engine.session import RealtimeSession
from parley.engine.turn_detection import EAGERNESS
from tests.support.audio import silence, tone
from tests.support.eventlog import EventLog
from tests.support.fakes import FakeModels, FakeStt

RATE = 24000
SPEECH_S = 0.6
LEAD_S = 0.2


class ScriptedTurnModel:
    sample_rate = 16000

    def __init__(self, probability: float, *later: float) -> None:
        self.answers = [probability, *later]  # one per call; the last one repeats
        self.calls: list[float] = []  # seconds of audio heard per call

    async def probability(self, audio: np.ndarray) -> float:
        self.calls.append(len(audio) / self.sample_rate)
        await asyncio.sleep(0.02)
        return self.answers[min(len(self.calls), len(self.answers)) - 1]


@dataclass
class TurnModels(FakeModels):
    turn: ScriptedTurnModel = field(default_factory=lambda: ScriptedTurnModel(0.9))


class SlowStt(FakeStt):
    """A transcription that takes seconds, as Whisper does on a busy machine."""

    delay_s = 3.0

    async def transcribe(self, audio, **options):  # type: ignore[no-untyped-def]
        await asyncio.sleep(self.delay_s)
        return await super().transcribe(audio, **options)


async def talk(
    probability: float | tuple[float, ...],
    transcript: str,
    silence_s: float,
    stt: FakeStt | None = None,
    eagerness: str = "high",
) -> tuple[EventLog, ScriptedTurnModel]:
    answers = probability if isinstance(probability, tuple) else (probability,)
    models = TurnModels(stt=stt or FakeStt(transcript), turn=ScriptedTurnModel(*answers))
    session = RealtimeSession(models, EngineConfig(validate_events=True))  # type: ignore[arg-type]
    log = EventLog()
    session.attach(log)
    session.open()
    td = {"type": "semantic_vad", "eagerness": eagerness, "create_response": False}
    session.receive(
        json.dumps(
            {
                "type": "session.update",
                "session": {"type": "realtime", "audio": {"input": {"turn_detection": td}}},
            }
        )
    )
    pcm = np.concatenate([silence(LEAD_S), tone(SPEECH_S), silence(silence_s)])
    step = RATE // 50
    for i in range(0, len(pcm), step):
        chunk = base64.b64encode(pcm[i : i + step].tobytes()).decode()
        session.receive(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
        await asyncio.sleep(0.02)  # real time: decisions arrive while the pause goes on
    await session.close()
    return log, models.turn


def stopped_after_speech_ms(log: EventLog) -> float | None:
    stops = log.of("input_audio_buffer.speech_stopped")
    return stops[0]["audio_end_ms"] - (LEAD_S + SPEECH_S) * 1000 if stops else None


async def test_a_finished_turn_ends_after_the_short_wait_with_one_model_call() -> None:
    log, model = await talk(0.9, "What is the capital of France?", 1.0)
    after = stopped_after_speech_ms(log)
    assert after is not None and after < EAGERNESS["high"].min_wait_ms + 300, after
    assert len(model.calls) == 1  # once, when the pause began; not per frame
    assert abs(model.calls[0] - (SPEECH_S + 0.2 + 0.3)) < 0.3  # the speech so far, prefix padding included


async def test_an_unfinished_turn_waits_for_the_fallback_and_is_judged_again() -> None:
    high = EAGERNESS["high"]
    log, model = await talk(0.1, "I was thinking that maybe", high.recheck_ms / 1000 + 0.3)
    assert stopped_after_speech_ms(log) is None  # no reply inside the pause
    assert len(model.calls) == 2  # at the start of the pause, then the recheck


async def test_at_the_recheck_a_finished_sentence_ends_the_turn_the_model_doubted() -> None:
    high = EAGERNESS["high"]
    log, model = await talk(0.1, "What is the capital of France?", high.recheck_ms / 1000 + 0.6)
    after = stopped_after_speech_ms(log)
    assert after is not None and after >= high.recheck_ms, after  # not at the first look
    assert len(model.calls) == 2


async def test_a_trailing_transcript_vetoes_the_model() -> None:
    log, model = await talk(0.9, "Can you tell me about the", 0.7)
    assert stopped_after_speech_ms(log) is None
    assert len(model.calls) == 1


async def test_a_late_transcript_does_not_hold_the_decision() -> None:
    log, _ = await talk(0.9, "", 1.5, stt=SlowStt("Can you tell me about the"))
    after = stopped_after_speech_ms(log)
    # The first look (200 ms) + model + the bounded wait for the transcript (600 ms), then the model decides.
    assert after is not None and after < 200 + 600 + EAGERNESS["high"].min_wait_ms + 300, after


async def test_a_transcript_that_comes_after_the_wait_still_ends_the_turn_when_it_comes() -> None:
    """Whisper queued behind other sessions: the model alone doubted the pause, the late
    transcript shows a finished sentence; the turn ends then, not at the look at 2 s."""
    low = EAGERNESS["low"]
    stt = SlowStt("What is the capital of France?")
    stt.delay_s = 1.6  # from the probe 100 ms into the pause: past both looks' 600 ms waits
    log, model = await talk(0.6, "", 2.6, stt=stt, eagerness="low")
    after = stopped_after_speech_ms(log)
    assert after is not None and 1600 <= after < low.recheck_ms, after
    assert len(model.calls) == 2  # the first look and the early one; no recheck needed


async def test_low_eagerness_looks_again_before_its_short_wait_runs_out() -> None:
    low = EAGERNESS["low"]
    assert low.early_look_ms is not None and low.early_look_ms < low.min_wait_ms
    # Doubted at the first look, judged finished at the early look: ends after the short wait.
    log, model = await talk((0.03, 0.95), "Who wrote Romeo and Juliet?", 1.6, eagerness="low")
    after = stopped_after_speech_ms(log)
    assert after is not None and low.min_wait_ms <= after < low.min_wait_ms + 300, after
    assert len(model.calls) == 2


async def test_low_eagerness_ends_a_turn_it_is_sure_of_after_its_shorter_wait() -> None:
    low = EAGERNESS["low"]
    assert low.sure_wait_ms is not None and low.sure_threshold is not None
    log, model = await talk(0.99, "What is the capital of France?", 1.4, eagerness="low")
    after = stopped_after_speech_ms(log)
    assert after is not None and low.sure_wait_ms <= after < low.min_wait_ms, after
    assert len(model.calls) == 1
    # Finished words the model is not sure of: the usual short wait.
    log, _ = await talk(0.93, "What is the capital of France?", 1.6, eagerness="low")
    after = stopped_after_speech_ms(log)
    assert after is not None and low.min_wait_ms <= after < low.min_wait_ms + 300, after
