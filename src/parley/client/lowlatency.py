"""A resampler for the live audio path, where latency matters more than filter sharpness.

soxr's HQ stream (what :class:`parley.protocol.audio_formats.Resampler` uses)
emits output in bursts: fed 20 ms blocks, it returns nothing for one block and
two blocks' worth on the next, i.e. 20–40 ms of added delay per conversion.
On the echo canceller's 24→48→24 kHz round trip and in front of the local VAD
that delay is pure barge-in latency, so these paths use soxr's "quick" cubic
mode, which returns every block at once (≈2 samples of delay). Speech content
(< 8 kHz) is unaffected; the difference is above 10 kHz.
"""

from __future__ import annotations

import numpy as np
import soxr


class LowLatencyResampler:
    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate, self.out_rate = in_rate, out_rate
        self._stream = (
            None
            if in_rate == out_rate
            else soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="QQ")
        )

    def __call__(self, pcm: np.ndarray) -> np.ndarray:
        if self._stream is None:
            return np.asarray(pcm, np.int16)
        return self._stream.resample_chunk(np.asarray(pcm, np.int16))
