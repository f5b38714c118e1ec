"""Fixtures for the real-model tests: one loaded ModelSet, and speech made at test time."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import soxr

from tests.support.models import real_models

Synth = Callable[..., tuple[np.ndarray, int]]


@pytest.fixture(scope="session")
async def models() -> Any:
    """The engine's ModelSet (shared with the other suites in this process)."""
    return await real_models()


@pytest.fixture(scope="session")
def synth(models: Any) -> Synth:
    """``synth(text) -> (int16 audio, rate)`` spoken by the Piper voice, the same every time.

    Piper samples its voice's noise afresh on each call, so each run heard a different
    rendering and Whisper's slips came and went with it (test_transcribes_piper_sentences
    failed now and then, under load or not). With the noise scales at zero a sentence
    always sounds the same, and a failure reproduces.
    """
    tts = models.tts

    def speak(text: str) -> tuple[np.ndarray, int]:
        saved = tts.noise_scale, tts.noise_w
        tts.noise_scale, tts.noise_w = 0.0, 0.0
        try:
            chunks = [tts.synthesize_chunk(c) for c in _chunks(text)]
        finally:
            tts.noise_scale, tts.noise_w = saved
        return np.concatenate([c.audio for c in chunks]), chunks[0].sample_rate

    return speak


def _chunks(text: str) -> list[str]:
    from parley.engine.models.tts_piper import split_chunks

    return split_chunks(text)


@pytest.fixture(scope="session")
def espeak() -> Synth:
    """``espeak(text) -> (int16 audio, rate)`` from Debian's espeak-ng (robotic: a harder STT input)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make system-deps)")

    def speak(text: str) -> tuple[np.ndarray, int]:
        wav = subprocess.run(
            ["espeak-ng", "-v", "en-us", "--stdout", text], capture_output=True, check=True
        ).stdout
        with wave.open(io.BytesIO(wav)) as w:
            return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).copy(), w.getframerate()

    return speak


def to_float(audio: np.ndarray, rate: int, target: int = 16000) -> np.ndarray:
    """int16 at ``rate`` → float32 at ``target`` (what the VAD and STT take)."""
    x = audio.astype(np.float32) / 32768.0
    return x if rate == target else soxr.resample(x, rate, target).astype(np.float32)
