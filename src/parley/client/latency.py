"""Turn latency as the user lives it: from the end of their turn to the reply's first sample at the speaker."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from parley.client.conversation import Conversation


FIRST_AUDIO_WAIT_S = 30.0  # queued reply audio is heard within this, or it never was


class LatencyMeter:
    def __init__(self, conv: Conversation) -> None:
        self._conv = conv
        self.latencies_ms: list[float] = []
        self.turn_end_at: float | None = None  # monotonic; the capture time of the turn's last sample
        self._awaiting_first_audio = False

    def turn_ended(self, at: float | None = None) -> None:
        """The user's turn ended ``at`` (now if unknown): the next reply audio is measured from there."""
        self.turn_end_at = time.monotonic() if at is None else at
        self._awaiting_first_audio = True

    def reply_expected(self) -> None:
        """A reply is on its way (committed, response.created): measure it, from now if no turn end is known."""
        if self.turn_end_at is None:
            self.turn_end_at = time.monotonic()
        self._awaiting_first_audio = True

    def reply_done(self) -> None:
        self.turn_end_at = None

    def stop_waiting(self) -> None:
        """The reply was interrupted or the connection dropped: its audio is not a first answer."""
        self._awaiting_first_audio = False

    def reply_audio(self, item_id: str | None) -> None:
        """Reply audio of ``item_id`` arrived; the first of a turn starts a measurement."""
        if self._awaiting_first_audio:
            self._awaiting_first_audio = False
            self._conv.spawn(self._first_audio_latency(item_id))

    async def _first_audio_latency(self, item_id: str | None) -> None:
        start = self.turn_end_at
        player = self._conv.player
        # Wait until the item's first sample is at the speaker, not merely queued. The item's
        # own record keeps that time, so a poll that comes late (a busy CPU) still finds it.
        deadline = time.monotonic() + FIRST_AUDIO_WAIT_S
        while time.monotonic() < deadline:
            info = player.item(item_id)
            if info is not None and info.first_dac_time is not None:
                if start is not None:
                    ms = (info.first_dac_time - start) * 1000
                    self.latencies_ms.append(ms)
                    await self._conv.signal("turn.latency", {"ms": ms, "item_id": item_id})
                return
            if info is not None and info.flushed:
                return  # interrupted before a sample was heard
            await asyncio.sleep(0.01)
