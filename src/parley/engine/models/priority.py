"""CPU priority between model stages sharing two cores.

The first spoken clause of a reply sets the turn latency, but while Piper
synthesises it the LLM is still decoding the rest of the reply on the same
cores, which roughly doubles the synthesis time. Work that a listener is
waiting for marks itself ``urgent``; background decoding calls
``yield_to_urgent`` between tokens and pauses while urgent work runs (never
for longer than ``max_pause``, so a stuck stage cannot stall the others).
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

    @contextmanager
    def urgent(self) -> Iterator[None]:
        with self._lock:
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
        if not self._clear.is_set():
            self._clear.wait(self.max_pause)


PRIORITY = CpuPriority()
