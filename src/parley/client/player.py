"""Playback that knows which sample of which assistant item is at the speaker.

The output device pulls fixed blocks from :class:`Player` (from its audio
thread). Every block is logged with the monotonic time at which its first
sample reaches the speaker (the device's reported output latency added), so
``position(item_id)`` answers "how much of this item has the user actually
heard?" rather than "how much have we received?". That figure is what goes
into ``conversation.item.truncate``, keeping the model's memory equal to what
was heard.

``flush()`` drops everything queued at once: the next block the device pulls
is silence, so playback stops within one block plus the device's own buffer.
``pause()`` keeps the queue (a local VAD guess that the server may not
confirm); ``resume()`` continues where it stopped.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from parley.protocol.audio_formats import CANONICAL_RATE


@dataclass
class _Segment:
    item_id: str | None
    pcm: np.ndarray
    offset: int = 0  # samples of pcm already handed to the device
    item_start: int = 0  # item sample index of pcm[0]


@dataclass
class _Span:
    """One run of an item's samples inside a block handed to the device."""

    item_id: str | None
    dac_time: float  # monotonic time at which the first sample of the run is at the speaker
    item_offset: int  # item sample index of the first sample
    count: int


@dataclass
class ItemPlayback:
    item_id: str | None
    received: int = 0  # samples received for the item
    handed: int = 0  # samples handed to the output device
    first_dac_time: float | None = None
    last_dac_end: float = 0.0  # speaker time of the end of the last handed sample
    flushed: bool = False
    spans: collections.deque[_Span] = field(default_factory=lambda: collections.deque(maxlen=4096))


class Player:
    """Thread-safe jitter-free playback queue with played-position tracking (24 kHz int16 mono)."""

    def __init__(self, rate: int = CANONICAL_RATE) -> None:
        self.rate = rate
        self._lock = threading.Lock()
        self._queue: collections.deque[_Segment] = collections.deque()
        self._items: dict[str | None, ItemPlayback] = {}
        self._order: collections.deque[str | None] = collections.deque(maxlen=64)
        self._paused = False
        self._queued_samples = 0
        self.blocks_read = 0
        # Called from the audio thread with every block exactly as played (the AEC reference
        # and the recorder); must be quick and thread-safe.
        self.on_played: list[Callable[[np.ndarray, float], None]] = []
        self._last_nonsilent_dac_end = 0.0
        # Blocks that carried audio: a poller that compares counts cannot miss playback that
        # started and ended between two of its looks.
        self.audible_blocks = 0

    # --- producer side (event loop) -------------------------------------------------

    def write(self, item_id: str | None, pcm: np.ndarray) -> None:
        pcm = np.asarray(pcm, dtype=np.int16)
        if not len(pcm):
            return
        with self._lock:
            info = self._items.get(item_id)
            if info is None:
                info = self._items[item_id] = ItemPlayback(item_id)
                self._order.append(item_id)
                if len(self._items) > 64:  # keep only recent items' bookkeeping
                    for old in list(self._items)[: len(self._items) - 64]:
                        self._items.pop(old, None)
            if info.flushed:
                return  # audio of an interrupted item that was still in flight
            self._queue.append(_Segment(item_id, pcm, 0, info.received))
            info.received += len(pcm)
            self._queued_samples += len(pcm)

    def flush(self, item_id: str | None = None) -> None:
        """Drop queued audio (of ``item_id`` only, or everything) so the next block is silent.

        A flushed item ignores any later ``write`` (deltas still in flight).
        """
        with self._lock:
            keep: collections.deque[_Segment] = collections.deque()
            for seg in self._queue:
                if item_id is not None and seg.item_id != item_id:
                    keep.append(seg)
            self._queue = keep
            self._queued_samples = sum(len(s.pcm) - s.offset for s in keep)
            targets = [item_id] if item_id is not None else list(self._items)
            for key in targets:
                if key in self._items:
                    self._items[key].flushed = True
            self._paused = False

    def pause(self) -> None:
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        with self._lock:
            self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    # --- consumer side (audio thread) -----------------------------------------------

    def read(self, n: int, dac_time: float | None = None) -> np.ndarray:
        """Return the next ``n`` samples; ``dac_time`` = when the first one reaches the speaker."""
        dac_time = time.monotonic() if dac_time is None else dac_time
        out = np.zeros(n, dtype=np.int16)
        filled = 0
        with self._lock:
            self.blocks_read += 1
            while filled < n and self._queue and not self._paused:
                seg = self._queue[0]
                take = min(n - filled, len(seg.pcm) - seg.offset)
                out[filled : filled + take] = seg.pcm[seg.offset : seg.offset + take]
                t = dac_time + filled / self.rate
                info = self._items.get(seg.item_id)
                if info is not None:
                    if info.first_dac_time is None:
                        info.first_dac_time = t
                    info.spans.append(_Span(seg.item_id, t, seg.item_start + seg.offset, take))
                    info.handed += take
                    info.last_dac_end = t + take / self.rate
                seg.offset += take
                filled += take
                self._queued_samples -= take
                if seg.offset >= len(seg.pcm):
                    self._queue.popleft()
            if filled:
                self._last_nonsilent_dac_end = dac_time + filled / self.rate
                self.audible_blocks += 1
        for cb in self.on_played:
            cb(out, dac_time)
        return out

    # --- queries ----------------------------------------------------------------------

    def position(self, item_id: str | None, now: float | None = None) -> int:
        """Samples of ``item_id`` that have reached the speaker by ``now``."""
        now = time.monotonic() if now is None else now
        with self._lock:
            info = self._items.get(item_id)
            if info is None:
                return 0
            best = 0
            for span in info.spans:
                if span.dac_time > now:
                    continue
                done = min(span.count, round((now - span.dac_time) * self.rate))
                best = max(best, span.item_offset + done)
            return best

    def position_ms(self, item_id: str | None, now: float | None = None) -> float:
        return self.position(item_id, now) * 1000.0 / self.rate

    def handed(self, item_id: str | None) -> int:
        """Samples of ``item_id`` given to the device (all of them will be heard, device buffer included)."""
        with self._lock:
            info = self._items.get(item_id)
            return info.handed if info else 0

    def received(self, item_id: str | None) -> int:
        with self._lock:
            info = self._items.get(item_id)
            return info.received if info else 0

    def item(self, item_id: str | None) -> ItemPlayback | None:
        return self._items.get(item_id)

    @property
    def queued_samples(self) -> int:
        return self._queued_samples

    def is_playing(self, now: float | None = None) -> bool:
        """True while audio is queued or still sounding from the device's buffer."""
        now = time.monotonic() if now is None else now
        return (self._queued_samples > 0 and not self._paused) or now < self._last_nonsilent_dac_end

    def audible_item(self, now: float | None = None) -> str | None:
        """The item whose audio is sounding or queued right now (the one a barge-in cuts)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._queue:
                return self._queue[0].item_id
            for key in reversed(self._order):
                info = self._items.get(key)
                if info is not None and info.handed and now < info.last_dac_end:
                    return key
        return None

    def sounding_until(self) -> float:
        return self._last_nonsilent_dac_end
