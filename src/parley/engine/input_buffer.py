"""The input audio buffer: canonical audio addressed by cumulative sample index.

Offsets in ``speech_started``/``speech_stopped``/``committed`` are counted
from the first sample of the session and never reset, so the buffer keeps
absolute indices: ``start`` is the index of its oldest sample, ``end`` the
index one past its newest.
"""

from __future__ import annotations

import numpy as np

from parley.protocol.audio_formats import CANONICAL_RATE


def samples_to_ms(samples: int) -> int:
    return int(samples * 1000 // CANONICAL_RATE)


def ms_to_samples(ms: float) -> int:
    return int(ms * CANONICAL_RATE / 1000)


class InputAudioBuffer:
    def __init__(self, max_seconds: float = 600.0) -> None:
        self._data = bytearray()
        self.start = 0  # absolute index of the first buffered sample
        self.max_samples = int(max_seconds * CANONICAL_RATE)

    @property
    def end(self) -> int:
        return self.start + len(self._data) // 2

    @property
    def samples(self) -> int:
        return len(self._data) // 2

    @property
    def duration_ms(self) -> float:
        return self.samples * 1000 / CANONICAL_RATE

    def append(self, pcm: np.ndarray) -> None:
        self._data += pcm.astype("<i2").tobytes()
        overflow = self.samples - self.max_samples
        if overflow > 0:  # a buffer that is never committed keeps only its newest audio
            self.drop_before(self.start + overflow)

    def slice(self, start: int, end: int) -> np.ndarray:
        a = max(start, self.start) - self.start
        b = max(min(end, self.end) - self.start, a)
        return np.frombuffer(bytes(self._data[2 * a : 2 * b]), dtype="<i2").astype(np.int16)

    def drop_before(self, index: int) -> None:
        cut = min(max(index - self.start, 0), self.samples)
        if cut:
            del self._data[: 2 * cut]
            self.start += cut

    def take(self, start: int, end: int) -> np.ndarray:
        """Return [start, end) and drop everything before ``end``."""
        audio = self.slice(start, end)
        self.drop_before(end)
        return audio

    def take_all(self) -> np.ndarray:
        return self.take(self.start, self.end)

    def clear(self) -> None:
        self.drop_before(self.end)
