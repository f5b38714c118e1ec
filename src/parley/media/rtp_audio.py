"""Audio frames as aiortc sends and receives them: 20 ms of 48 kHz s16, mono in and out of stereo."""

from __future__ import annotations

import fractions

import numpy as np
from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer
from av import AudioFrame

from parley.media.pacing import FRAME_SAMPLES, RTP_RATE

TIME_BASE = fractions.Fraction(1, RTP_RATE)

_SILENT_STEREO = np.zeros((1, 2 * FRAME_SAMPLES), dtype=np.int16)


def stereo_frame(mono: np.ndarray | None, index: int) -> AudioFrame:
    """One 20 ms 48 kHz s16 stereo frame (silence for ``None``) numbered ``index``.

    Both channels carry the mono signal: aiortc's own upmix would cost 3 dB.
    """
    data = _SILENT_STEREO if mono is None else np.repeat(mono, 2).reshape(1, -1)
    frame = AudioFrame.from_ndarray(data, format="s16", layout="stereo")
    frame.sample_rate = RTP_RATE
    frame.pts = index * FRAME_SAMPLES
    frame.time_base = TIME_BASE
    return frame


def to_mono(frame: AudioFrame) -> np.ndarray:
    """One int16 channel from an s16 frame (packed or planar), averaging the channels."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if data.dtype.kind == "f":  # decoders other than aiortc's may give float samples
        data = (np.clip(data, -1.0, 1.0) * 32767).astype(np.int16)
    elif data.dtype != np.int16:
        data = data.astype(np.int16)
    if channels == 1:
        return data.reshape(-1)
    if frame.format.is_planar:
        return (data.astype(np.int32).sum(axis=0) // channels).astype(np.int16)
    inter = data.reshape(-1, channels).astype(np.int32)
    return (inter.sum(axis=1) // channels).astype(np.int16)


def lower_input_latency(receiver: RTCRtpReceiver) -> None:
    """Let decoded microphone frames through as soon as they are complete.

    aiortc's audio jitter buffer holds four frames (80 ms) before it releases
    one. That smooths nothing here: the session consumes audio as it comes
    (there is no playout clock on this side), and reordering and loss are
    handled the same with or without the prefetch. So it is pure delay on every
    turn and on barge-in detection. The buffer is private aiortc state, hence
    the defensive lookup: if it changes, we keep aiortc's default.
    """
    name = "_RTCRtpReceiver__jitter_buffer"
    current = getattr(receiver, name, None)
    if isinstance(current, JitterBuffer) and getattr(current, "_prefetch", 0) > 1:
        setattr(receiver, name, JitterBuffer(capacity=current.capacity, prefetch=1))
