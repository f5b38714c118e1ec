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

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from parley.media.pacing import FRAME_SAMPLES, RTP_RATE, FrameClock
from parley.media.playout import PlayoutPosition
from parley.media.rtp_audio import stereo_frame, to_mono
from parley.protocol.audio_formats import CANONICAL_RATE, Resampler

log = logging.getLogger(__name__)


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
