"""A simulated spoken user's ears, shared by ``bench load`` and ``bench soak``.

The user's mouth is :class:`parley.bench.turn.Microphone` (queued utterances sent as 20 ms
chunks on a real-time schedule). Here: the session's events with their arrival times and
waiting for one, the reply played from its first delta at real-time pace (gaps a listener
would hear), and waiting until the microphone has sent an utterance's onset or end.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from parley.bench.turn import Microphone
from parley.protocol.audio_formats import CANONICAL_RATE

GAP_MS = 20.0  # a gap shorter than one frame is jitter no listener hears
BYTES_PER_SECOND = CANONICAL_RATE * 2


@dataclass
class Playback:
    """A listener's speaker: plays a reply from its first delta, in real time, and notes gaps."""

    started: float | None = None
    runs_out: float = 0.0  # wall time at which the audio received so far has been played
    underruns: int = 0
    underrun_ms: float = 0.0
    gaps: list[tuple[float, float]] = field(default_factory=list)  # (seconds into the reply, gap ms)
    received_s: float = 0.0  # audio received so far

    def receive(self, now: float, nbytes: int) -> None:
        seconds = nbytes / BYTES_PER_SECOND
        self.received_s += seconds
        if self.started is None:
            self.started, self.runs_out = now, now
        gap_ms = (now - self.runs_out) * 1000
        if gap_ms > GAP_MS:
            self.underruns += 1
            self.underrun_ms += gap_ms
            self.gaps.append((round(self.runs_out - self.started, 2), round(gap_ms)))
        self.runs_out = max(self.runs_out, now) + seconds

    def heard_ms(self, now: float) -> int:
        """Milliseconds of the reply handed to the speaker by ``now`` (what ``truncate`` names)."""
        if self.started is None:
            return 0
        # The gaps counted so far all lie before now (each is noticed when late audio arrives).
        return int(1000 * max(0.0, min(self.received_s, now - self.started - self.underrun_ms / 1000)))

    def audible(self, now: float) -> bool:
        return self.started is not None and self.runs_out > now

    def report(self) -> dict[str, Any]:
        return {"underruns": self.underruns, "underrun_ms": self.underrun_ms, "gaps": self.gaps}


class Events:
    """A session's server events with arrival times, and waiting for one.

    ``error`` events' messages are also collected in ``errors``.
    """

    def __init__(self, ws: Any, errors: list[str] | None = None) -> None:
        self.ws = ws
        self.items: list[tuple[float, dict[str, Any]]] = []
        self.arrived = asyncio.Event()
        self.errors = errors if errors is not None else []
        self.playback: dict[str, Playback] = {}  # response id → its playback

    async def read(self) -> None:
        async for raw in self.ws:
            now = time.perf_counter()
            event = json.loads(raw)
            if event["type"] == "response.output_audio.delta":
                # Base64: 4 characters carry 3 bytes.
                nbytes = len(event["delta"]) * 3 // 4 - event["delta"][-2:].count("=")
                self.playback.setdefault(event["response_id"], Playback()).receive(now, nbytes)
            elif event["type"] == "error":
                self.errors.append(event["error"].get("message", ""))
            self.items.append((now, event))
            self.arrived.set()

    async def wait_for(self, where: Any, start: int, timeout: float) -> tuple[int, float, dict[str, Any]]:
        i = start
        async with asyncio.timeout(timeout):
            while True:
                while i < len(self.items):
                    t, e = self.items[i]
                    if where(e):
                        return i, t, e
                    i += 1
                self.arrived.clear()
                await self.arrived.wait()

    async def next_reply_audio(
        self, seen: set[str], start: int, timeout: float
    ) -> tuple[float, dict[str, Any]]:
        """The first audio delta of a response not in ``seen`` (added to it), from event ``start`` on."""
        _, t, delta = await self.wait_for(
            lambda e: e["type"] == "response.output_audio.delta" and e["response_id"] not in seen,
            start,
            timeout,
        )
        seen.add(delta["response_id"])
        return t, delta


async def until_spoken(mic: Microphone, label: str, *, end: bool) -> None:
    """Until the microphone has sent the onset (or the end) of ``label``'s speech."""
    # The microphone marks these on its own 20 ms schedule; polling on that schedule is exact.
    while mic.sent_voice.get(label, (None, None))[1 if end else 0] is None or (end and not mic.idle):  # noqa: ASYNC110
        await asyncio.sleep(0.02)
