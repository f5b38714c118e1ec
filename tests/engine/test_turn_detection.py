"""TurnDetector and sounds_finished alone: scripted speech probabilities, exact sample positions."""

from __future__ import annotations

import numpy as np
import pytest

from parley.engine.turn_detection import (
    EAGERNESS,
    Look,
    Probe,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    TurnDetector,
    sounds_finished,
    turn_complete,
    turn_sure,
)

FRAME = 480  # 20 ms at 24 kHz: the detector runs at the canonical rate, so nothing is resampled


class ScriptedVad:
    """Returns the next scripted probability for each frame (then silence)."""

    def __init__(self, probabilities: list[float]) -> None:
        self.probabilities = list(probabilities)
        self.resets = 0

    def __call__(self, frame: np.ndarray) -> float:
        return self.probabilities.pop(0) if self.probabilities else 0.0

    def reset(self) -> None:
        self.resets += 1


def frames(*runs: tuple[float, int]) -> list[float]:
    return [p for p, n in runs for _ in range(n)]


def detector(config: dict, probabilities: list[float], **kw) -> TurnDetector:
    return TurnDetector(ScriptedVad(probabilities), 24000, FRAME, config, **kw)


def run(det: TurnDetector, n_frames: int, buffer_start: int = 0) -> list:
    return det.feed(np.zeros(n_frames * FRAME, dtype=np.int16), buffer_start)


SERVER_VAD = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 40, "silence_duration_ms": 200}


def test_server_vad_start_probe_and_stop_positions() -> None:
    det = detector(SERVER_VAD, frames((0.0, 5), (0.9, 10), (0.0, 12)), min_speech_ms=40, probe_ms=100)
    signals = run(det, 27)
    # Two 20 ms frames of speech start the turn, back-dated to the first and padded by 40 ms.
    assert signals[0] == SpeechStarted(onset=5 * FRAME, start=5 * FRAME - 960)
    # 100 ms into the silence: a probe; 200 ms: the end of the turn, silence included.
    assert signals[1] == Probe(start=5 * FRAME - 960, end=20 * FRAME)
    assert signals[2] == SpeechStopped(start=5 * FRAME - 960, end=25 * FRAME)
    assert len(signals) == 3 and not det.speaking


def test_short_blips_and_wavering_probabilities() -> None:
    # One frame of speech is not a turn.
    det = detector(SERVER_VAD, frames((0.9, 1), (0.0, 5)), min_speech_ms=40)
    assert run(det, 6) == []
    # Once speaking, a probability just under the threshold (hysteresis) does not count as silence.
    det = detector(SERVER_VAD, frames((0.9, 3), (0.4, 20), (0.0, 10)), min_speech_ms=40)
    signals = run(det, 33)
    assert [type(s) for s in signals] == [SpeechStarted, Probe, SpeechStopped]
    assert signals[-1].end == 33 * FRAME


def test_prefix_padding_is_clamped_to_the_buffer() -> None:
    det = detector(SERVER_VAD, frames((0.0, 1), (0.9, 3)), min_speech_ms=40)
    [started] = run(det, 4, buffer_start=200)
    assert started == SpeechStarted(onset=FRAME, start=200)


def test_speech_resumed_only_after_a_probe() -> None:
    # Speech comes back 60 ms into the pause, before the probe: nothing to drop.
    det = detector(SERVER_VAD, frames((0.9, 3), (0.0, 3), (0.9, 3)), min_speech_ms=40, probe_ms=100)
    assert [type(s) for s in run(det, 9)] == [SpeechStarted]
    # 120 ms into the pause, after the probe: speculative work must go.
    det = detector(SERVER_VAD, frames((0.9, 3), (0.0, 6), (0.9, 3)), min_speech_ms=40, probe_ms=100)
    assert [type(s) for s in run(det, 12)] == [SpeechStarted, Probe, SpeechResumed]
    assert det.speaking


def test_positions_count_from_where_the_detector_starts() -> None:
    det = detector(SERVER_VAD, frames((0.9, 3)), min_speech_ms=40, position=48_000)
    [started] = run(det, 3, buffer_start=48_000)
    assert started == SpeechStarted(onset=48_000, start=48_000)
    assert det.position == 48_000 + 3 * FRAME


def semantic(eagerness: str, probabilities: list[float]) -> TurnDetector:
    return detector(
        {"type": "semantic_vad", "eagerness": eagerness}, probabilities, min_speech_ms=40, probe_ms=100
    )


def test_semantic_vad_transcribes_early_then_looks_and_waits_until_told() -> None:
    det = semantic("high", frames((0.9, 3), (0.0, 100)))  # waits up to 2 s, 250 ms once finished
    signals = run(det, 3 + 5)  # 100 ms of silence: the probe (transcribe, start the reply)
    assert [type(s) for s in signals] == [SpeechStarted, Probe]
    signals = run(det, 5)  # 200 ms: the first look (the end-of-turn model), no end yet
    assert signals == [Look(start=0, end=13 * FRAME, sentence_suffices_at=None, first=True)]
    assert run(det, 2) == []
    det.set_required_silence(det.min_wait_ms)
    [stopped] = run(det, 1)
    assert isinstance(stopped, SpeechStopped) and stopped.end == 16 * FRAME


def test_semantic_decision_for_a_pause_that_is_over_is_dropped() -> None:
    det = semantic("high", frames((0.9, 3), (0.0, 15), (0.9, 3), (0.0, 100)))
    signals = run(det, 3 + 10)
    assert isinstance(signals[-1], Look)
    stale = det.pause
    signals = run(det, 5 + 3)  # speech resumes before the model has answered
    assert [type(s) for s in signals] == [SpeechResumed]
    assert not det.decide(True, stale)  # about the pause that ended: ignored
    run(det, 5)  # 100 ms into the new pause: a probe, no look yet
    assert not det.decide(True, stale)
    assert det.required_silence_ms == EAGERNESS["high"].max_wait_ms
    signals = run(det, 5)
    assert isinstance(signals[-1], Look)
    assert det.decide(True, det.pause)
    [stopped] = run(det, 3)
    assert isinstance(stopped, SpeechStopped)


def test_a_pause_judged_unfinished_is_judged_again_then_ends_at_the_fallback() -> None:
    eager = EAGERNESS["high"]
    det = semantic("high", frames((0.9, 3), (0.0, 200)))
    signals = run(det, 3 + 10)
    assert [type(s) for s in signals] == [SpeechStarted, Probe, Look]
    assert det.decide(False, det.pause)
    n = eager.recheck_ms // 20
    signals = run(det, n - 10)
    assert signals == [Look(start=0, end=(3 + n) * FRAME, sentence_suffices_at=0.0)]
    assert det.decide(False, det.pause)  # the same pause: a later look keeps its number
    signals = run(det, (eager.max_wait_ms - eager.recheck_ms) // 20)
    assert [type(s) for s in signals] == [SpeechStopped]


def test_low_eagerness_looks_three_times_in_an_unfinished_pause_and_once_in_a_finished_one() -> None:
    low = EAGERNESS["low"]
    assert low.early_look_ms is not None
    det = semantic("low", frames((0.9, 3), (0.0, 200)))
    looks = [s for s in run(det, 3 + low.recheck_ms // 20) if isinstance(s, Look)]
    assert [s.sentence_suffices_at for s in looks] == [None, 0.5, 0.0]
    det = semantic("low", frames((0.9, 3), (0.0, 200)))
    run(det, 3 + 10)
    assert det.decide(True, det.pause)
    signals = run(det, low.min_wait_ms // 20)
    assert [type(s) for s in signals] == [SpeechStopped]  # no look after the pause was judged finished


@pytest.mark.parametrize(
    ("probability", "transcript", "complete"),
    [
        (0.9, "What is the capital of France?", True),
        (0.9, None, True),  # transcription failed or was cancelled: the model alone
        (0.9, "Can you tell me about the", False),  # the transcript vetoes a dangling article
        (0.9, "So, um...", False),
        (0.2, "What is the capital of France?", False),  # the model hears an unfinished turn
        (None, "What is the capital of France?", True),  # no model: the transcript alone
        (None, "I was thinking about the", False),
    ],
)
def test_turn_complete_combines_model_and_transcript(probability, transcript, complete) -> None:
    assert turn_complete(probability, transcript, threshold=0.5) is complete


def test_eagerness_orders_thresholds_and_waits() -> None:
    low, medium, high = EAGERNESS["low"], EAGERNESS["medium"], EAGERNESS["high"]
    assert EAGERNESS["auto"] == medium
    assert low.threshold >= medium.threshold >= high.threshold
    assert low.max_wait_ms > medium.max_wait_ms > high.max_wait_ms
    assert low.min_wait_ms >= medium.min_wait_ms >= high.min_wait_ms
    for e in (low, medium, high):
        assert e.min_wait_ms < e.recheck_ms < e.max_wait_ms


def test_reset_forgets_the_utterance() -> None:
    det = detector(SERVER_VAD, frames((0.9, 3)), min_speech_ms=40)
    run(det, 3)
    det.reset()
    assert not det.speaking and det.vad.resets == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "finished"),
    [
        ("What is the capital of France?", True),
        ("What is the capital of France, and what is it famous for?", True),
        ("Who wrote Romeo and Juliet, and what is the story about?", True),
        ("Where are you from?", True),
        ("How long does it take to drive from?", False),
        ("I was looking for", False),
        ("Tell me about.", False),
        ("And?", False),
        ("Tell me a joke.", True),
        ("Wow!", True),
        ("I was thinking about the", False),
        ("Can you tell me, and", False),
        ("So um.", False),
        ("Well...", False),
        ("Let me think…", False),
        ("first of all,", False),
        ("no punctuation at all", False),
        ("   ", False),
    ],
)
def test_sounds_finished(text: str, finished: bool) -> None:
    assert sounds_finished(text) is finished


def test_a_long_pause_trusts_a_finished_sentence_over_a_doubting_model() -> None:
    said = "Who wrote Romeo and Juliet? And what is the story about?"
    assert not turn_complete(0.84, said, 0.9)  # the first look: the model doubts, keep waiting
    assert turn_complete(0.84, said, 0.9, sentence_suffices_at=0.0)  # seconds later: the sentence is done
    assert not turn_complete(0.84, "I was thinking about the", 0.9, sentence_suffices_at=0.0)
    assert not turn_complete(0.95, "Can you tell me, and", 0.9, sentence_suffices_at=0.0)
    assert not turn_complete(0.2, None, 0.9, sentence_suffices_at=0.0)  # no transcript: the model decides


def test_at_the_early_look_a_finished_statement_needs_even_odds_and_a_question_none() -> None:
    said = "Tell me about the tallest mountain in the world."
    assert turn_complete(0.54, said, 0.9, sentence_suffices_at=0.5)
    assert not turn_complete(0.3, said, 0.9, sentence_suffices_at=0.5)
    assert not turn_complete(0.54, "I would like to book a table for", 0.9, sentence_suffices_at=0.5)
    # Smart-turn all but rejects long compound questions in Piper's voice.
    asked = "Which planet is closest to the sun and what is it like?"
    assert turn_complete(0.008, asked, 0.9, sentence_suffices_at=0.5)
    assert not turn_complete(0.008, asked, 0.9)  # not at the first look
    assert not turn_complete(0.008, "How long does it take to drive from?", 0.9, sentence_suffices_at=0.5)
    assert not turn_complete(0.008, "Can you tell me what the?", 0.9, sentence_suffices_at=0.5)


def test_a_turn_the_model_is_sure_of_ends_sooner_under_low_eagerness() -> None:
    low = EAGERNESS["low"]
    assert low.sure_wait_ms is not None and low.sure_threshold is not None
    assert low.sure_wait_ms < low.min_wait_ms
    finished = "What should I pack for a week of hiking?"
    assert turn_sure(0.98, finished, low)
    assert not turn_sure(0.95, finished, low)  # the model is not sure enough
    assert not turn_sure(0.99, "Can you tell me about the", low)  # the words trail off
    assert not turn_sure(0.99, None, low)  # no transcript (yet)
    assert not turn_sure(0.99, finished, EAGERNESS["medium"])  # only where the eagerness says so

    det = semantic("low", frames((0.9, 3), (0.0, 200)))
    run(det, 3 + 10)
    assert det.decide(True, det.pause, sure=True)
    assert det.required_silence_ms == low.sure_wait_ms
    signals = run(det, low.sure_wait_ms // 20 - 10)
    assert [type(s) for s in signals] == [SpeechStopped]
    det = semantic("low", frames((0.9, 3), (0.0, 200)))
    run(det, 3 + 10)
    assert det.decide(True, det.pause, sure=False)
    assert det.required_silence_ms == low.min_wait_ms
