"""WAV reading/writing for the client: crash-tolerant writer and a resampling reader.

The writer patches the RIFF sizes every half second, so a session killed
mid-way (SIGKILL, power loss) still leaves a playable file with everything up
to the last patch; ``close()`` writes the final sizes.
"""

from __future__ import annotations

import struct
import threading
import time
import wave
from pathlib import Path

import numpy as np

from parley.protocol.audio_formats import CANONICAL_RATE, resample


def read_wav(path: str | Path, rate: int = CANONICAL_RATE) -> np.ndarray:
    """Mono int16 at ``rate`` from a PCM WAV file of any rate/channel count (8/16/32-bit)."""
    with wave.open(str(path), "rb") as w:
        channels, width, src_rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
        raw = w.readframes(w.getnframes())
    if width == 2 and channels == 1 and src_rate == rate:
        return np.frombuffer(raw, "<i2").astype(np.int16)  # already canonical: bit-exact
    if width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 4:
        x = np.frombuffer(raw, "<i4").astype(np.float32) / 2147483648.0
    else:
        raise ValueError(f"{path}: unsupported sample width {width * 8} bits (use 16-bit PCM)")
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1)
    x = resample(x, src_rate, rate)
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)


class WavWriter:
    """Streaming mono/stereo int16 WAV writer whose header stays valid while it grows."""

    PATCH_EVERY_S = 0.5

    def __init__(self, path: str | Path, rate: int = CANONICAL_RATE, channels: int = 1) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rate, self.channels = rate, channels
        self._f = open(self.path, "wb")
        self._frames = 0
        self._lock = threading.Lock()
        self._last_patch = 0.0
        self._write_header()

    def _write_header(self) -> None:
        data_bytes = self._frames * 2 * self.channels
        self._f.seek(0)
        self._f.write(b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE")
        self._f.write(
            b"fmt "
            + struct.pack(
                "<IHHIIHH",
                16,
                1,
                self.channels,
                self.rate,
                self.rate * 2 * self.channels,
                2 * self.channels,
                16,
            )
        )
        self._f.write(b"data" + struct.pack("<I", data_bytes))
        self._f.seek(0, 2)

    @property
    def frames(self) -> int:
        return self._frames

    def write(self, pcm: np.ndarray) -> None:
        data = np.asarray(pcm, dtype="<i2")
        with self._lock:
            if self._f.closed:
                return
            self._f.write(data.tobytes())
            self._frames += len(data) // self.channels if data.ndim == 1 else len(data)
            now = time.monotonic()
            if now - self._last_patch > self.PATCH_EVERY_S:
                self._last_patch = now
                self._write_header()
                self._f.flush()

    def close(self) -> None:
        with self._lock:
            if self._f.closed:
                return
            self._write_header()
            self._f.close()
