"""Barge-in: the user talks over the assistant.

What the client must do is one table, :func:`duties`, the same as the browser
client's (``web/static/js/realtime/barge-in.js``) and the README's "Barge-in"
section. Playback stops at once (silent from the next 20 ms block), and
``conversation.item.truncate`` carries the milliseconds actually handed to the
speaker, not the milliseconds received, so the server drops the unheard part
of the reply. An optional local VAD pauses playback as soon as the user starts
speaking, before the server's ``speech_started`` arrives; if the server never
confirms (a cough, a door, our own echo), playback resumes.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from parley.client.options import Interruption
from parley.protocol.audio_formats import CANONICAL_RATE

if TYPE_CHECKING:
    from parley.client.conversation import Conversation

PendingPause = tuple[str, int, float]  # (item, samples handed to the speaker, paused at)


@dataclass(frozen=True)
class Duties:
    stop: bool  # flush local playback
    truncate: bool  # conversation.item.truncate at the played position
    cancel: bool  # response.cancel with the active response's id
    clear: bool  # output_audio_buffer.clear (WebRTC)


def server_interrupts(session: dict) -> bool:
    """Whether the session cancels (and over WebRTC clears) by itself when the user starts speaking.

    A missing ``interrupt_response`` means true: the GA default, and what the engine does.
    """
    td = ((session.get("audio") or {}).get("input") or {}).get("turn_detection")
    if not td:
        return False
    return td.get("interrupt_response") is not False


def duties(
    *,
    voice: bool,
    server_interrupts: bool,
    over_webrtc: bool,
    audible: bool,
    active: bool,
    truncate_over_webrtc: bool,
) -> Duties:
    """The client's part of a barge-in (the README's table).

    ``voice``: the server reported speech (``speech_started``), as opposed to a
    manual interrupt. ``audible``: assistant audio is being played. ``active``:
    a response is in progress.
    """
    # The server stops the response itself only when the interruption is by voice and it interrupts.
    client_stops_response = not voice or not server_interrupts
    return Duties(
        stop=audible,
        # Over WebRTC the server truncates to what it sent; a client that knows what reached the
        # speaker may truncate again with that smaller figure.
        truncate=audible and (not over_webrtc or truncate_over_webrtc),
        cancel=client_stops_response and active,
        clear=over_webrtc and client_stops_response and (audible or active),
    )


class BargeIn:
    def __init__(self, conv: Conversation) -> None:
        self._conv = conv
        self.interruptions: list[Interruption] = []
        self._pending_local: PendingPause | None = None

    def server_interrupts(self) -> bool:
        return server_interrupts(self._conv.server_session)

    def _duties(self, *, voice: bool, audible: bool) -> Duties:
        conv = self._conv
        return duties(
            voice=voice,
            server_interrupts=self.server_interrupts(),
            over_webrtc=not conv.transport.audio_in_events,
            audible=audible,
            active=conv.active_response is not None,
            truncate_over_webrtc=conv.options.truncate_over_webrtc,
        )

    def reset(self) -> None:
        self._pending_local = None

    # --- local VAD ---

    def local_speech_started(self) -> None:
        """Runs in the audio thread (which feeds the speaker): pause at once; the loop confirms or resumes."""
        player = self._conv.player
        if player.is_playing() and self._pending_local is None:
            player.pause()
            item = player.audible_item()
            if item is not None:
                self._pending_local = (item, player.handed(item), time.monotonic())

    def local_vad_event(self, ev: str, t: float) -> None:
        conv = self._conv
        conv.spawn(conv.signal("local_vad", {"event": ev, "time": t}))
        if ev == "start" and self._pending_local is not None:
            conv.spawn(self._local_timeout(self._pending_local))

    async def _local_timeout(self, pending: PendingPause) -> None:
        await asyncio.sleep(self._conv.options.local_vad_confirm_s)
        if self._pending_local is pending:
            # The server never confirmed: a cough, a door, our own echo. Carry on talking.
            self._pending_local = None
            self._conv.player.resume()

    # --- server events ---

    async def speech_started(self) -> None:
        conv = self._conv
        now = time.monotonic()
        audible = conv.player.is_playing(now) or self._pending_local is not None
        todo = self._duties(voice=True, audible=audible)
        if todo.stop or todo.cancel or todo.clear:
            await self.interrupt("server_vad", voice=True, speech_started_at=now)

    async def truncated(self, ev: dict) -> None:
        for intr in reversed(self.interruptions):
            if intr.item_id == ev.get("item_id") and intr.truncated is None:
                intr.truncated = ev
                break

    # --- the interruption ---

    async def interrupt(
        self, trigger: str, *, voice: bool = False, speech_started_at: float | None = None
    ) -> Interruption | None:
        """Stop the assistant: by voice (the server's ``speech_started``) or by hand."""
        conv = self._conv
        player = conv.player
        now = time.monotonic()
        local = self._pending_local
        self._pending_local = None
        item = player.audible_item(now)
        if local is not None and item is None:
            item = local[0]
        player.flush()
        conv.latency.stop_waiting()
        todo = self._duties(voice=voice, audible=item is not None)
        result = None
        if item is not None:
            handed = player.handed(item)
            received = player.received(item)
            # Everything handed to the device will be heard (its buffer drains), nothing after it.
            audio_end_ms = int(handed * 1000 // CANONICAL_RATE)
            result = Interruption(
                item,
                audio_end_ms,
                received * 1000 / CANONICAL_RATE,
                "local_vad" if local else trigger,
                local[2] if local else now,
                speech_started_at,
            )
            self.interruptions.append(result)
            turn = conv.transcript.turn(item)
            if turn is not None:
                turn.interrupted = True
            if todo.truncate:
                await conv.send(
                    {
                        "type": "conversation.item.truncate",
                        "item_id": item,
                        "content_index": 0,
                        "audio_end_ms": audio_end_ms,
                    }
                )
        if todo.cancel:
            await conv.send({"type": "response.cancel", "response_id": conv.active_response})
            if result is not None:
                result.cancel_sent = True
        if todo.clear:
            await conv.send({"type": "output_audio_buffer.clear"})
        await conv.set_state("listening")
        if result is not None:
            await conv.signal("interrupted", result)
        return result
