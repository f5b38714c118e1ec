"""Audio between the client's 24 kHz int16 blocks and the session's wire format."""

from __future__ import annotations

import numpy as np

from parley.protocol.audio_formats import (
    CANONICAL_RATE,
    AudioFormat,
    Resampler,
    alaw_decode,
    alaw_encode,
    ulaw_decode,
    ulaw_encode,
)


def dbfs(pcm: np.ndarray) -> float:
    if not len(pcm):
        return -120.0
    rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
    return 20.0 * float(np.log10(max(rms, 1e-3) / 32768.0))


class OutputDecoder:
    """Server audio (PCM16 or G.711) → 24 kHz int16, with the resampler's tail flushed per item.

    A streaming 8→24 kHz resampler holds back the last ~100 ms of what it was given;
    without a flush at the end of each item that tail would play only at the start
    of the next reply, attributed to the wrong item.
    """

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self._rs = Resampler(fmt.rate, CANONICAL_RATE)

    def __call__(self, data: bytes) -> np.ndarray:
        if self.format.type == "audio/pcm":
            return np.frombuffer(data[: len(data) - len(data) % 2], "<i2").astype(np.int16)
        return self._rs(ulaw_decode(data) if self.format.type == "audio/pcmu" else alaw_decode(data))

    def flush(self) -> np.ndarray:
        if self.format.type == "audio/pcm":
            return np.zeros(0, np.int16)
        tail = self._rs(np.zeros(0, np.int16), last=True)
        self._rs = Resampler(self.format.rate, CANONICAL_RATE)
        return tail


class InputEncoder:
    """Mic blocks (24 kHz int16) → the session's input format, one block in, one block out.

    G.711 goes through the low-latency resampler: soxr's HQ stream would hold each
    20 ms block back and send it 20–40 ms later in bursts (plus empty appends).
    """

    def __init__(self, fmt: AudioFormat) -> None:
        from parley.client.lowlatency import LowLatencyResampler

        self.format = fmt
        self._rs = LowLatencyResampler(CANONICAL_RATE, fmt.rate)

    def __call__(self, pcm: np.ndarray) -> bytes:
        if self.format.type == "audio/pcm":
            return np.asarray(pcm, "<i2").tobytes()
        x = self._rs(pcm)
        return ulaw_encode(x) if self.format.type == "audio/pcmu" else alaw_encode(x)
