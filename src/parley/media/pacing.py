"""Real-time pacing of 20 ms audio frames, as WebRTC sends them (48 kHz RTP clock)."""

from __future__ import annotations

import asyncio
from collections import deque

import numpy as np

RTP_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms at 48 kHz
FRAME_SECONDS = FRAME_SAMPLES / RTP_RATE
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
