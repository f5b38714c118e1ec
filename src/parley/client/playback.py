"""Assistant audio → the player: decoded from ``response.output_audio.delta`` (WebSocket) or RTP (WebRTC).

Over WebRTC the audio carries no item id; the item is the assistant message
the server announced last, until its output buffer stops or is cleared.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from parley.client.codecs import OutputDecoder
from parley.protocol.audio_formats import AudioFormat

if TYPE_CHECKING:
    from parley.client.conversation import Conversation


class Playback:
    def __init__(self, conv: Conversation) -> None:
        self._conv = conv
        #: Called with (item id, 24 kHz int16 PCM) for each piece of assistant audio handed to the player.
        self.hooks: list[Callable[[str, np.ndarray], None]] = []
        self._rtc_item: str | None = None  # assistant item whose audio currently arrives over RTP
        self._decoder = OutputDecoder(AudioFormat(conv.session_options.output_format))

    def set_format(self, fmt: AudioFormat) -> None:
        self._decoder = OutputDecoder(fmt)

    def reset(self) -> None:
        self._rtc_item = None

    def rtc_audio(self, pcm: np.ndarray) -> None:
        if self._rtc_item is not None:
            self._play(self._rtc_item, pcm)

    def _play(self, item_id: str, pcm: np.ndarray, *, reply_audio: bool = True) -> None:
        if reply_audio:
            self._conv.latency.reply_audio(item_id)
        for hook in self.hooks:
            hook(item_id, pcm)
        self._conv.player.write(item_id, pcm)

    @property
    def _over_rtp(self) -> bool:
        return not self._conv.transport.audio_in_events

    async def assistant_item(self, ev: dict) -> None:
        item = ev.get("item") or {}
        if item.get("type") == "message" and item.get("role") == "assistant":
            self._rtc_item = item.get("id")

    async def audio_delta(self, ev: dict) -> None:
        self._play(ev.get("item_id", ""), self._decoder(base64.b64decode(ev.get("delta") or "")))

    async def audio_done(self, ev: dict) -> None:
        tail = self._decoder.flush()
        if len(tail):
            self._play(ev.get("item_id", ""), tail, reply_audio=False)

    async def buffer_started(self, ev: dict) -> None:
        if self._over_rtp and self._rtc_item is None:
            self._rtc_item = ev.get("response_id")

    async def buffer_stopped(self, ev: dict) -> None:
        if self._over_rtp:
            self._rtc_item = None

    async def buffer_cleared(self, ev: dict) -> None:
        if self._over_rtp:
            self._rtc_item = None
            self._conv.player.flush()
