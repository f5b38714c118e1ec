"""CPU priority between model stages sharing two cores.

The first spoken clause of a reply sets the turn latency, but while Piper
synthesises it the LLM is still decoding the rest of the reply on the same
cores, which roughly doubles the synthesis time. Work that a listener is
waiting for marks itself ``urgent``; background decoding calls
``yield_to_urgent`` between tokens and pauses while urgent work runs, once per
stretch of urgent work and never for longer than ``max_pause``, so neither a
stuck stage nor a busy engine can stall the others. (With several conversations
there is nearly always urgent work somewhere; pausing up to ``max_pause`` at
every token had slowed a reply's later sentences to a crawl: measured with
`parley bench load`, 4–10 s silences in the middle of replies, the cores idle.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class CpuPriority:
    def __init__(self, max_pause: float = 0.5) -> None:
        self.max_pause = max_pause
        self._count = 0
        self._lock = threading.Lock()
        self._clear = threading.Event()
        self._clear.set()
        self._stretch = 0  # counts stretches of urgent work (count going 0 → 1)
        self._waited = threading.local()  # per worker thread: the stretch it already paused for

    @contextmanager
    def urgent(self) -> Iterator[None]:
        with self._lock:
            if self._count == 0:
                self._stretch += 1
            self._count += 1
            self._clear.clear()
        try:
            yield
        finally:
            with self._lock:
                self._count -= 1
                if self._count == 0:
                    self._clear.set()

    def yield_to_urgent(self) -> None:
        """Called by background work between steps; returns at once when nothing is urgent."""
        if self._clear.is_set():
            return
        stretch = self._stretch
        if getattr(self._waited, "stretch", None) == stretch:
            return  # paused for this stretch already: carry on beside it
        self._waited.stretch = stretch
        self._clear.wait(self.max_pause)


PRIORITY = CpuPriority()
