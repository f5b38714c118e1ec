"""Audio formats of the Realtime protocol and conversion to Parley's canonical audio.

Canonical audio inside Parley is mono int16 at 24 kHz (the protocol's
``audio/pcm``). G.711 (``audio/pcmu``, ``audio/pcma``) is 8 kHz, one byte per
sample; it is expanded/compressed with numpy lookup tables and resampled with
soxr streams so that chunk boundaries leave no clicks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import soxr

CANONICAL_RATE = 24_000
FormatType = Literal["audio/pcm", "audio/pcmu", "audio/pcma"]
FORMAT_TYPES: tuple[FormatType, ...] = ("audio/pcm", "audio/pcmu", "audio/pcma")


@dataclass(frozen=True)
class AudioFormat:
    type: FormatType = "audio/pcm"

    @property
    def rate(self) -> int:
        return CANONICAL_RATE if self.type == "audio/pcm" else 8_000

    @property
    def bytes_per_ms(self) -> int:
        # PCM16 at 24 kHz is 48 bytes/ms; G.711 at 8 kHz is 8 bytes/ms.
        return 48 if self.type == "audio/pcm" else 8

    def ms(self, nbytes: int) -> float:
        return nbytes / self.bytes_per_ms

    def to_json(self) -> dict:
        if self.type == "audio/pcm":
            return {"type": "audio/pcm", "rate": CANONICAL_RATE}
        return {"type": self.type}

    @classmethod
    def from_json(cls, obj: dict | None) -> AudioFormat:
        if not obj:
            return cls()
        return cls(obj.get("type") or "audio/pcm")


# --- G.711 ---------------------------------------------------------------


def _ulaw_decode_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _alaw_decode_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1))
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


_ULAW_DECODE = _ulaw_decode_table()
_ALAW_DECODE = _alaw_decode_table()


def _build_encode_table(decode: np.ndarray) -> np.ndarray:
    """Map every int16 value (offset by 32768) to the nearest G.711 code."""
    order = np.argsort(decode.astype(np.int32))
    sorted_vals = decode[order].astype(np.int32)
    samples = np.arange(-32768, 32768, dtype=np.int32)
    idx = np.clip(np.searchsorted(sorted_vals, samples), 1, 255)
    left, right = sorted_vals[idx - 1], sorted_vals[idx]
    nearest = np.where(samples - left <= right - samples, idx - 1, idx)
    return order[nearest].astype(np.uint8)


_ULAW_ENCODE = _build_encode_table(_ULAW_DECODE)
_ALAW_ENCODE = _build_encode_table(_ALAW_DECODE)


def ulaw_decode(data: bytes) -> np.ndarray:
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def alaw_decode(data: bytes) -> np.ndarray:
    return _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def ulaw_encode(pcm: np.ndarray) -> bytes:
    return _ULAW_ENCODE[pcm.astype(np.int32) + 32768].tobytes()


def alaw_encode(pcm: np.ndarray) -> bytes:
    return _ALAW_ENCODE[pcm.astype(np.int32) + 32768].tobytes()


# --- conversion streams -------------------------------------------------


def float_to_int16(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)


def int16_to_float(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) / 32768.0


class Resampler:
    """Streaming int16 resampler (soxr keeps filter state across chunks).

    ``quality`` trades fidelity for delay: soxr's "HQ" holds back ~21 ms of a
    24→16 kHz stream, "LQ" ~6 ms. Paths that only feed a detector (VAD) use
    "LQ", because every held-back millisecond delays barge-in.
    """

    def __init__(self, in_rate: int, out_rate: int, quality: str = "HQ") -> None:
        self.in_rate, self.out_rate = in_rate, out_rate
        self._stream = (
            None
            if in_rate == out_rate
            else soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality=quality)
        )

    def __call__(self, pcm: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return pcm
        return self._stream.resample_chunk(pcm, last=last)


def resample(pcm: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """One-shot resample of a whole int16 or float32 signal."""
    if in_rate == out_rate:
        return pcm
    return soxr.resample(pcm, in_rate, out_rate)


class InputDecoder:
    """Wire bytes in a session's input format → canonical 24 kHz int16."""

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        # "MQ" holds back 15 ms instead of 21 ms; telephone-band audio loses nothing by it.
        self._resampler = Resampler(fmt.rate, CANONICAL_RATE, quality="MQ")

    def __call__(self, data: bytes) -> np.ndarray:
        if self.format.type == "audio/pcm":
            if len(data) % 2:
                data = data[:-1]
            return np.frombuffer(data, dtype="<i2").astype(np.int16)
        pcm8k = ulaw_decode(data) if self.format.type == "audio/pcmu" else alaw_decode(data)
        return self._resampler(pcm8k)


class OutputEncoder:
    """Canonical 24 kHz int16 → wire bytes in a session's output format."""

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self._resampler = Resampler(CANONICAL_RATE, fmt.rate)

    def __call__(self, pcm: np.ndarray, last: bool = False) -> bytes:
        if self.format.type == "audio/pcm":
            return pcm.astype("<i2").tobytes()
        pcm8k = self._resampler(pcm, last=last)
        return ulaw_encode(pcm8k) if self.format.type == "audio/pcmu" else alaw_encode(pcm8k)
