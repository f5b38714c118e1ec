"""Smart-turn v3.2, the end-of-turn model: the pinned file, its hash check, and its verdicts on speech."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from parley.bench.speech import silence, synthesize
from parley.engine.models import turn_smart
from parley.engine.models.errors import ModelUnavailable
from parley.engine.models.turn_smart import SmartTurn, log_mel_features

pytestmark = [pytest.mark.models]


@pytest.fixture(scope="module")
def model() -> SmartTurn:
    m = SmartTurn()
    m.warmup()
    return m


def speech(text: str) -> np.ndarray:
    """Piper speech followed by the 200 ms pause at which the session asks the model."""
    pcm = np.concatenate([silence(0.3, 16000), synthesize(text, rate=16000), silence(0.2, 16000)])
    return pcm.astype(np.float32) / 32768.0


def test_the_pinned_file_is_found_through_package_metadata() -> None:
    path = turn_smart.model_path()
    assert path.name == "smart-turn-v3.2-cpu.onnx"
    assert path.stat().st_size == 8_679_182


def test_a_file_with_other_content_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "smart-turn-v3.2-cpu.onnx"
    shutil.copy(turn_smart.model_path(), copy)
    with copy.open("r+b") as f:  # one flipped byte in the middle of the weights
        f.seek(4_000_000)
        byte = f.read(1)
        f.seek(4_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelUnavailable) as raised:
        turn_smart.verify_sha256(copy)
    message = str(raised.value)
    assert raised.value.stage == "turn"
    assert turn_smart.SHA256 in message and "refusing" in message and "pipecat-ai==1.14.0" in message
    with pytest.raises(ModelUnavailable, match="refusing"):
        SmartTurn(copy)  # never handed to onnxruntime


def test_another_pipecat_release_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(turn_smart.importlib.metadata, "version", lambda _dist: "1.15.0")
    with pytest.raises(ModelUnavailable, match=r"1\.15\.0 is installed; Parley is pinned to 1\.14\.0"):
        turn_smart.model_path()


def test_features_are_whisper_shaped() -> None:
    rng = np.random.default_rng(0)
    feats = log_mel_features(rng.standard_normal(128_000).astype(np.float32) * 0.1)
    assert feats.shape == (80, 800) and feats.dtype == np.float32
    assert feats.max() <= 1.5 and feats.min() >= feats.max() - 2.0  # clamped to 8 decades, scaled by 1/4
    with pytest.raises(ValueError):
        log_mel_features(np.zeros(16_000, dtype=np.float32))


@pytest.mark.parametrize(
    "text",
    [
        "What is the weather like in Paris today?",
        "Thanks, that's all I needed.",
        "How far is the moon from the earth?",
    ],
)
def test_finished_speech_is_complete(model: SmartTurn, text: str) -> None:
    assert model.predict(speech(text)) > 0.8


@pytest.mark.parametrize(
    "text",
    [
        "So I was thinking that maybe we could",
        "My favourite colour is blue, and",
    ],
)
def test_speech_that_trails_off_is_incomplete(model: SmartTurn, text: str) -> None:
    assert model.predict(speech(text)) < 0.2


async def test_probability_runs_off_the_event_loop(model: SmartTurn) -> None:
    audio = speech("Can you book me a table for two?")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    started = time.perf_counter()
    p = await model.probability(audio)
    elapsed = time.perf_counter() - started
    ticker.cancel()
    assert 0.0 <= p <= 1.0
    # The loop kept turning while the model ran (a blocking call would leave ~0 ticks).
    assert ticks >= max(1, int(elapsed / 0.01) // 3)


async def test_a_decision_does_not_wait_for_a_busy_default_executor(model: SmartTurn) -> None:
    """asyncio's default executor full of blocked work (as prompt prefills waiting for the
    language model once held it) must not delay the end-of-turn model."""
    release = threading.Event()
    blockers = [asyncio.to_thread(release.wait, 30) for _ in range(64)]  # more than any default pool
    pending = [asyncio.ensure_future(b) for b in blockers]
    try:
        await asyncio.sleep(0.05)
        p = await asyncio.wait_for(model.probability(speech("Is it going to rain today?")), 10)
        assert 0.0 <= p <= 1.0
    finally:
        release.set()
        await asyncio.gather(*pending)
