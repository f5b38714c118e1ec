"""Audio files for the OpenAI-compatible audio API: decode any upload, encode speech as it is made.

Uploads (``/v1/audio/transcriptions``) come as WAV, MP3, FLAC, Ogg/Opus, WebM,
M4A…: PyAV (FFmpeg, already here for WebRTC) decodes them all and resamples to
the rate the STT wants. Speech (``/v1/audio/speech``) leaves as it is
synthesised: ``pcm`` (raw 24 kHz 16-bit little-endian mono, as OpenAI sends it)
and ``wav`` byte for byte; ``mp3``, ``opus`` (Ogg), ``aac`` (ADTS) and
``flac`` through an FFmpeg muxer that writes into a buffer drained after each
chunk, so a client starts playing before the last sentence exists.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np

SPEECH_RATE = 24_000  # OpenAI's pcm response format: 24 kHz, s16le, mono

# response_format → (FFmpeg muxer, codec, codec sample format, MIME type)
_ENCODED: dict[str, tuple[str, str, str, str]] = {
    "mp3": ("mp3", "libmp3lame", "s16p", "audio/mpeg"),
    "opus": ("ogg", "libopus", "s16", "audio/ogg"),
    "aac": ("adts", "aac", "fltp", "audio/aac"),
    "flac": ("flac", "flac", "s16", "audio/flac"),
}
SPEECH_FORMATS = ("pcm", "wav", *_ENCODED)
MIME_TYPES = {"pcm": "audio/pcm", "wav": "audio/wav", **{k: v[3] for k, v in _ENCODED.items()}}


class AudioDecodeError(ValueError):
    """The upload is not audio FFmpeg can read."""


def decode_audio(data: bytes, rate: int) -> np.ndarray:
    """Any audio file → float32 mono at ``rate`` (raises :class:`AudioDecodeError`)."""
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise AudioDecodeError("the file has no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            parts: list[np.ndarray] = []
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    parts.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                parts.append(out.to_ndarray().reshape(-1))
    except AudioDecodeError:
        raise
    except (av.error.FFmpegError, ValueError, EOFError) as exc:
        raise AudioDecodeError(f"the audio could not be decoded ({exc})") from None
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


def wav_header(rate: int = SPEECH_RATE) -> bytes:
    """A streaming WAV header: the sizes are unknown, so they say "as long as it goes" (0xFFFFFFFF)."""
    unknown = 0xFFFFFFFF
    return (
        b"RIFF"
        + struct.pack("<I", unknown)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", unknown)
    )


class _Sink:
    """A write-only file for FFmpeg's muxer; :meth:`take` drains what it has written."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: Any) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


class SpeechEncoder:
    """24 kHz int16 mono chunks in, bytes of ``response_format`` out, chunk by chunk."""

    def __init__(self, response_format: str) -> None:
        if response_format not in SPEECH_FORMATS:
            raise ValueError(f"unsupported response_format {response_format!r}")
        self.format = response_format
        self.media_type = MIME_TYPES[response_format]
        self._started = False
        self._container: Any = None
        if response_format in _ENCODED:
            import av

            muxer, codec, sample_format, _mime = _ENCODED[response_format]
            self._sink = _Sink()
            self._container = av.open(self._sink, mode="w", format=muxer)
            self._stream = self._container.add_stream(codec, rate=SPEECH_RATE)
            self._stream.layout = "mono"
            self._stream.format = sample_format
            self._pts = 0

    def push(self, pcm: np.ndarray) -> bytes:
        pcm = np.ascontiguousarray(pcm, dtype="<i2").reshape(-1)
        if self._container is None:
            head = b""
            if self.format == "wav" and not self._started:
                head = wav_header()
            self._started = True
            return head + pcm.tobytes()
        import av

        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SPEECH_RATE
        frame.pts = self._pts
        self._pts += len(pcm)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._sink.take()

    def finish(self) -> bytes:
        if self._container is None:
            return b"" if self._started or self.format == "pcm" else wav_header()
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._container = None
        return self._sink.take()

    def close(self) -> None:
        """Release the muxer when the client went away mid-stream."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # half-written streams may complain; nothing is sent any more
                pass
            self._container = None
