"""Audio for a WebRTC call: the paced output track and the microphone pump.

The output track is the session's :class:`~parley.engine.response.MediaOutput`:
spoken audio is queued per response and item, and aiortc pulls one 20 ms frame
at a time. The frame's content is chosen *after* the pacing sleep, so a
``clear()`` (barge-in) is silent on the very next frame, and the samples
counted as played are exactly those handed to the encoder — once a frame has
left aiortc it will be heard, and nothing tells us more than that.

Frames are 48 kHz stereo s16: Opus works at 48 kHz, and aiortc's resampler
upmixes mono at -3 dB, so duplicating the channel ourselves keeps the level.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from parley.engine.response import PlayoutPosition
from parley.protocol.audio_formats import CANONICAL_RATE, Resampler

log = logging.getLogger(__name__)

RTP_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms at 48 kHz
FRAME_SECONDS = FRAME_SAMPLES / RTP_RATE
TIME_BASE = fractions.Fraction(1, RTP_RATE)
# After a stall longer than this (event loop blocked), restart the clock instead
# of bursting the backlog: a burst would only arrive late at the listener anyway.
MAX_LAG_SECONDS = 0.2


class FrameClock:
    """Paces 20 ms frames on the event loop's clock.

    After a stall longer than ``max_lag`` (event loop blocked) it restarts the
    clock instead of bursting the backlog, which would only reach the listener
    late anyway. ``index`` numbers the frames (their pts in units of a frame).
    """

    def __init__(self, max_lag: float | None = MAX_LAG_SECONDS) -> None:
        self.max_lag = max_lag
        self.index = -1
        self._start: float | None = None

    async def tick(self) -> int:
        loop = asyncio.get_running_loop()
        self.index += 1
        if self._start is None:
            self._start = loop.time()
            return self.index
        delay = self._start + self.index * FRAME_SECONDS - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        elif self.max_lag is not None and delay < -self.max_lag:
            self._start = loop.time() - self.index * FRAME_SECONDS
        return self.index


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


class SampleQueue:
    """A FIFO of int16 samples taken out in fixed-size blocks (zero-padded when short)."""

    def __init__(self) -> None:
        self._chunks: deque[np.ndarray] = deque()
        self.size = 0

    def push(self, pcm: np.ndarray) -> None:
        if len(pcm):
            self._chunks.append(pcm)
            self.size += len(pcm)

    def drop_oldest(self) -> None:
        self.size -= len(self._chunks.popleft())

    def __len__(self) -> int:
        return len(self._chunks)

    def take(self, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.int16)
        filled = 0
        while filled < n and self._chunks:
            head = self._chunks[0]
            k = min(n - filled, len(head))
            out[filled : filled + k] = head[:k]
            filled += k
            self.size -= k
            if k == len(head):
                self._chunks.popleft()
            else:
                self._chunks[0] = head[k:]
        return out


class PlayoutListener(Protocol):
    """Told when a response's audio starts going out and when it has drained (the session)."""

    def playout_started(self, response_id: str) -> None: ...

    def playout_stopped(self, response_id: str) -> None: ...


@dataclass
class _Chunk:
    response_id: str
    item_id: str
    pcm: np.ndarray  # 48 kHz mono int16
    offset: int = 0

    @property
    def remaining(self) -> int:
        return len(self.pcm) - self.offset


@dataclass
class _Playout:
    """One response's audio between its first write and its drain (or a clear)."""

    started: bool = False
    ended: bool = False  # end_of_response seen: no more audio will come
    pending: int = 0  # 48 kHz samples queued, not yet sent
    sent: dict[str, int] = field(default_factory=dict)  # item id → 48 kHz samples sent
    item_id: str = ""  # the item whose audio went out last (or is queued first)


class PacedAudioOutput(MediaStreamTrack):
    """An audio track of exactly paced 20 ms frames; silence when nothing is queued."""

    kind = "audio"

    def __init__(self, listener: PlayoutListener | None = None) -> None:
        super().__init__()
        self.listener = listener
        self._queue: deque[_Chunk] = deque()
        self._playouts: dict[str, _Playout] = {}  # insertion order = playout order
        self._writing: tuple[str, str] | None = None  # (response, item) the resampler holds a tail of
        self._resampler = Resampler(CANONICAL_RATE, RTP_RATE)
        self._clock = FrameClock()
        # Frames that went out (partly) silent while a response was still due to speak:
        # speech arrived slower than real time. Diagnostics only.
        self.underruns = 0

    # --- MediaOutput (called by the session) -----------------------------

    def write(self, response_id: str, item_id: str, pcm: np.ndarray) -> None:
        if self._writing != (response_id, item_id):
            self._flush_resampler()
            self._writing = (response_id, item_id)
        self._enqueue(response_id, item_id, self._resampler(pcm.astype(np.int16, copy=False)))

    def end_of_response(self, response_id: str) -> None:
        if self._writing is not None and self._writing[0] == response_id:
            self._flush_resampler()
        playout = self._playouts.get(response_id)
        if playout is not None:
            playout.ended = True  # the frame loop reports the drain

    def clear(self) -> PlayoutPosition | None:
        self._report_drained()
        position = None
        current = next((rid for rid, p in self._playouts.items() if p.started), None)
        if current is None and self._playouts:
            current = next(iter(self._playouts))
        if current is not None:
            playout = self._playouts[current]
            played = playout.sent.get(playout.item_id, 0)
            position = PlayoutPosition(current, playout.item_id, played * 1000 // RTP_RATE)
        self._queue.clear()
        self._playouts.clear()
        # The resampler may hold the tail of the cleared audio; start afresh.
        self._writing = None
        self._resampler = Resampler(CANONICAL_RATE, RTP_RATE)
        return position

    # --- queueing --------------------------------------------------------

    def _flush_resampler(self) -> None:
        if self._writing is None:
            return
        response_id, item_id = self._writing
        tail = self._resampler(np.zeros(0, dtype=np.int16), last=True)
        self._resampler = Resampler(CANONICAL_RATE, RTP_RATE)
        self._writing = None
        self._enqueue(response_id, item_id, tail)

    def _enqueue(self, response_id: str, item_id: str, pcm48: np.ndarray) -> None:
        if len(pcm48) == 0:
            return
        playout = self._playouts.get(response_id)
        if playout is None:
            playout = self._playouts[response_id] = _Playout(item_id=item_id)
        playout.pending += len(pcm48)
        self._queue.append(_Chunk(response_id, item_id, pcm48))

    @property
    def playing(self) -> bool:
        """Some response's audio is queued or going out."""
        return bool(self._playouts)

    # --- the frame loop (called by aiortc's RTP sender) --------------------

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        index = await self._clock.tick()
        if self.readyState != "live":
            raise MediaStreamError
        # Chosen only now, after the sleep: a clear() during it already applies.
        return stereo_frame(self._take(FRAME_SAMPLES), index)

    def _take(self, n: int) -> np.ndarray | None:
        if len(self._queue) == 0 or sum(c.remaining for c in self._queue) < n:
            # Running dry (speech arrives slower than real time): the resampler's
            # held-back tail (~27 ms) must go out now, not after the next clause.
            self._flush_resampler()
        if not self._queue:
            self._report_drained()
            self.underruns += any(p.started for p in self._playouts.values())
            return None
        out = np.zeros(n, dtype=np.int16)
        filled = 0
        while filled < n and self._queue:
            chunk = self._queue[0]
            k = min(n - filled, chunk.remaining)
            out[filled : filled + k] = chunk.pcm[chunk.offset : chunk.offset + k]
            chunk.offset += k
            filled += k
            if chunk.remaining == 0:
                self._queue.popleft()
            playout = self._playouts.get(chunk.response_id)
            if playout is None:  # pragma: no cover - queue and playouts are cleared together
                continue
            if not playout.started:
                playout.started = True
                self._notify(self._listener_started, chunk.response_id)
            playout.item_id = chunk.item_id
            playout.sent[chunk.item_id] = playout.sent.get(chunk.item_id, 0) + k
            playout.pending -= k
            self._report_drained()
        return out

    def _report_drained(self) -> None:
        for response_id, playout in list(self._playouts.items()):
            if playout.ended and playout.pending == 0:
                del self._playouts[response_id]
                if playout.started:
                    self._notify(self._listener_stopped, response_id)

    def _listener_started(self, response_id: str) -> None:
        if self.listener is not None:
            self.listener.playout_started(response_id)

    def _listener_stopped(self, response_id: str) -> None:
        if self.listener is not None:
            self.listener.playout_stopped(response_id)

    @staticmethod
    def _notify(callback: Callable[[str], None], response_id: str) -> None:
        # Runs inside aiortc's RTP loop: an exception here would end the track.
        try:
            callback(response_id)
        except Exception:
            log.exception("playout listener failed")


class InputAudioPump:
    """Decoded remote audio (48 kHz s16, often packed stereo) → 24 kHz mono int16 for the session."""

    def __init__(self, deliver: Callable[[np.ndarray], None]) -> None:
        self.deliver = deliver
        self.frames = 0
        self.samples = 0  # 24 kHz samples delivered
        self._resampler: Resampler | None = None
        self._rate = 0

    async def run(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if isinstance(frame, AudioFrame):
                self.push(frame)

    def push(self, frame: AudioFrame) -> None:
        mono = to_mono(frame)
        if frame.sample_rate != self._rate or self._resampler is None:
            self._rate = frame.sample_rate
            # soxr "LQ" holds back ~1 ms here instead of ~32 ms (HQ): that delay would add to every barge-in.
            self._resampler = Resampler(self._rate, CANONICAL_RATE, quality="LQ")
        pcm = self._resampler(mono)
        self.frames += 1
        if len(pcm):
            self.samples += len(pcm)
            self.deliver(pcm)


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
