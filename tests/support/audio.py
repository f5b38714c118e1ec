"""Synthetic 24 kHz int16 signals: a steady tone the fake (energy) VAD hears as speech, and silence."""

from __future__ import annotations

import numpy as np

RATE = 24000


def tone(seconds: float, amplitude: float = 0.3, hz: float = 300.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * hz * t) * amplitude * 32767).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.int16)
