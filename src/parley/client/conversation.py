"""The public Python API: one voice conversation with a Realtime server.

```python
conv = Conversation("http://127.0.0.1:8765/v1", api_key="local", audio=SoundDeviceAudio())

@conv.on("assistant.transcript.delta")
async def show(ev): print(ev["delta"], end="", flush=True)

async with conv:
    await conv.send_text("What's the capital of France?")
    await conv.wait_for("response.done")
```

:class:`Conversation` is a facade over six parts, each in its own module:

* :class:`~parley.client.connection.Connection`: connect, configure the session, reconnect;
* :class:`~parley.client.microphone.Microphone`: echo cancellation, local VAD, gating, encoding;
* :class:`~parley.client.barge_in.BargeIn`: stop, truncate and cancel when the user talks over
  the assistant (the rules are in the README's barge-in table);
* :class:`~parley.client.playback.Playback`: assistant audio (events or RTP) → the player;
* :class:`~parley.client.transcript.TranscriptModel`: the turns as text, as heard;
* :class:`~parley.client.latency.LatencyMeter`: end of turn → first reply sample at the speaker.

Server events reach the parts through one table (:meth:`Conversation._event_table`).

High-level events (``conv.on(name)``), besides every raw server event by its
``type`` and ``"*"`` for all of them: ``connection``, ``state``,
``user.transcript.delta|done``, ``assistant.transcript.delta|done|truncated``,
``interrupted``, ``turn.latency``, ``mic.level``, ``local_vad``, ``error``.
Assistant audio as it is handed to the speaker: :attr:`Conversation.on_assistant_audio`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from parley.client.barge_in import BargeIn
from parley.client.connection import Connection
from parley.client.devices import AudioDevice, NullAudio
from parley.client.events import Callback, EventHub
from parley.client.latency import LatencyMeter
from parley.client.microphone import Microphone
from parley.client.options import STATES, ClientOptions, Interruption, SessionOptions, Turn
from parley.client.playback import Playback
from parley.client.player import Player
from parley.client.transcript import TranscriptModel
from parley.client.transport import ConnectionLost, Transport
from parley.protocol import ids
from parley.protocol.audio_formats import AudioFormat

__all__ = ["STATES", "Callback", "ClientOptions", "Conversation", "Interruption", "SessionOptions", "Turn"]

log = logging.getLogger(__name__)

Handler = Callable[[dict], Awaitable[None]]


class Conversation(EventHub):
    def __init__(
        self,
        url: str = "http://127.0.0.1:8765/v1",
        api_key: str | None = None,
        *,
        transport: str | Transport = "websocket",
        session: SessionOptions | None = None,
        options: ClientOptions | None = None,
        audio: AudioDevice | None = None,
        recorder: Any | None = None,
        transport_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.url = url
        self.api_key = api_key or "local"
        self.session_options = session or SessionOptions()
        self.options = options or ClientOptions()
        self.audio: AudioDevice = audio if audio is not None else NullAudio()
        self.recorder = recorder
        self.player = Player()
        self.closed = asyncio.Event()
        self.state = "connecting"
        self.server_session: dict[str, Any] = {}
        self.active_response: str | None = None  # the response the assistant is giving, if any
        self.muted = False
        self.ptt_active = False
        self.connection = Connection(self, transport, dict(transport_options or {}))
        self.microphone = Microphone(self)
        self.barge_in = BargeIn(self)
        self.transcript = TranscriptModel(self)
        self.latency = LatencyMeter(self)
        self.playback = Playback(self)
        self.transport: Transport = self.connection.make_transport()
        self._tasks: list[asyncio.Task] = []
        self._bg: set[asyncio.Future] = set()
        self._events = self._event_table()

    # --- what the parts record ------------------------------------------------------------

    @property
    def on_assistant_audio(self) -> list[Callable[[str, np.ndarray], None]]:
        """Hooks called with (item id, 24 kHz int16 PCM) for each piece of assistant audio played."""
        return self.playback.hooks

    @property
    def turns(self) -> list[Turn]:
        return self.transcript.turns

    @property
    def interruptions(self) -> list[Interruption]:
        return self.barge_in.interruptions

    @property
    def latencies_ms(self) -> list[float]:
        return self.latency.latencies_ms

    @property
    def mic_level_db(self) -> float:
        return self.microphone.level_db

    @property
    def connection_status(self) -> str:
        return self.connection.status

    @property
    def session_count(self) -> int:
        return self.connection.session_count

    @property
    def connected(self) -> bool:
        return self.connection.connected.is_set()

    # --- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Conversation:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect, configure the session and start audio. Raises :class:`TransportError` if it cannot."""
        self.connection.closing = False
        self.microphone.prepare()
        if self.recorder is not None:
            self.player.on_played.append(self.recorder.speaker)
        await self.connection.set_status("connecting")
        await self.connection.connect_once()
        self.audio.start(self.player, self.microphone.on_capture)
        self.microphone.device_started(self.audio.output_latency, self.audio.input_latency)
        self._tasks = [
            asyncio.create_task(self.connection.run(), name="parley-recv"),
            asyncio.create_task(self.microphone.run(), name="parley-mic"),
            asyncio.create_task(self._ticker(), name="parley-tick"),
        ]

    async def close(self) -> None:
        """Stop audio, close the connection and the recording; safe to call at any time, twice."""
        if self.connection.closing and self.closed.is_set():
            return
        self.connection.closing = True
        with contextlib.suppress(Exception):
            self.audio.stop()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await t
        self._tasks = []
        with contextlib.suppress(Exception):
            await self.transport.close()
        if self.recorder is not None:
            self.recorder.close()
        for _etype, _pred, fut in self._waiters:
            if not fut.done():
                fut.set_exception(ConnectionLost("conversation closed"))
        self.state = "closed"
        self.connection.status = "closed"
        self.closed.set()
        await self.notify("connection", {"status": "closed", "message": "closed"})

    def forget_session(self) -> None:
        """The connection dropped: whatever the old session was saying is gone."""
        self.player.flush()
        self.active_response = None
        self.playback.reset()
        self.barge_in.reset()
        self.latency.stop_waiting()
        self.microphone.reset()

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Run ``coro`` in the background, keeping a reference until it is done."""
        task = asyncio.ensure_future(coro)
        self._bg.add(task)  # the loop holds only weak references
        task.add_done_callback(self._bg.discard)

    # --- sending ------------------------------------------------------------------------

    async def send(self, event: dict) -> None:
        """Send one client event (an ``event_id`` is added when missing)."""
        event.setdefault("event_id", ids.event_id())
        if self.recorder is not None:
            self.recorder.event("out", event)
        await self.transport.send(event)

    async def send_text(self, text: str, *, respond: bool = True) -> None:
        """A typed user message; the assistant answers it unless ``respond`` is false."""
        if self.player.is_playing():
            await self.interrupt(trigger="manual")
        await self.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": text}],
                },
            }
        )
        if respond:
            await self.create_response()

    async def create_response(self, **params: Any) -> None:
        self.latency.turn_ended()
        await self.set_state("thinking")
        event: dict[str, Any] = {"type": "response.create"}
        if params:
            event["response"] = params
        await self.send(event)

    async def cancel_response(self) -> None:
        await self.send({"type": "response.cancel"})

    async def commit(self) -> None:
        await self.send({"type": "input_audio_buffer.commit"})

    async def update_session(self, **changes: Any) -> None:
        """Change session options (voice, instructions, turn_detection…) and tell the server."""
        for key, value in changes.items():
            if not hasattr(self.session_options, key):
                raise AttributeError(f"unknown session option {key!r}")
            setattr(self.session_options, key, value)
        await self.send({"type": "session.update", "session": self.session_options.to_session()})

    async def retrieve_item(self, item_id: str, timeout: float = 10.0) -> dict:
        """The server's current copy of an item (after truncation: the trimmed transcript)."""
        eid = ids.event_id()
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        # One future, two ways to resolve it: the item, or an error naming our event.
        entries = [
            ("conversation.item.retrieved", lambda e: (e.get("item") or {}).get("id") == item_id, fut),
            ("error", lambda e: (e.get("error") or {}).get("event_id") == eid, fut),
        ]
        self._waiters.extend(entries)
        try:
            await self.send({"type": "conversation.item.retrieve", "item_id": item_id, "event_id": eid})
            result = await asyncio.wait_for(fut, timeout)
        finally:
            for entry in entries:
                if entry in self._waiters:
                    self._waiters.remove(entry)
        if result.get("type") == "error":
            raise RuntimeError(result["error"].get("message"))
        return result["item"]

    def mute(self, on: bool = True) -> None:
        self.muted = on

    async def push_to_talk(self, pressed: bool) -> None:
        """Manual turns: audio is sent only while pressed; release commits and asks for a reply."""
        if pressed and not self.ptt_active:
            if self.player.is_playing() or self.active_response:
                await self.interrupt(trigger="manual")
            await self.send({"type": "input_audio_buffer.clear"})
            self.ptt_active = True
        elif not pressed and self.ptt_active:
            self.ptt_active = False
            if self.session_options.turn_detection is None:
                await self.commit()
                await self.create_response()

    async def interrupt(self, trigger: str = "manual") -> Interruption | None:
        """Stop the assistant now: flush playback, truncate to what was heard, cancel if needed."""
        return await self.barge_in.interrupt(trigger)

    # --- receiving ------------------------------------------------------------------------

    def _event_table(self) -> dict[str, tuple[Handler, ...]]:
        """Which parts handle which server event, in order (before the event's own callbacks)."""
        transcript, barge_in, playback = self.transcript, self.barge_in, self.playback
        return {
            "session.created": (self._session_created,),
            "session.updated": (self._session_updated,),
            "input_audio_buffer.speech_started": (self._speech_started,),
            "input_audio_buffer.speech_stopped": (self._speech_stopped,),
            "input_audio_buffer.committed": (self._committed,),
            "conversation.item.added": (transcript.item_added,),
            "conversation.item.input_audio_transcription.delta": (transcript.user_delta,),
            "conversation.item.input_audio_transcription.completed": (transcript.user_done,),
            "conversation.item.truncated": (barge_in.truncated, transcript.truncated),
            "response.created": (self._response_created,),
            "response.done": (self._response_done,),
            "response.output_item.added": (playback.assistant_item, self._output_item_added),
            "response.output_audio.delta": (playback.audio_delta,),
            "response.output_audio.done": (playback.audio_done,),
            "response.output_audio_transcript.delta": (transcript.assistant_delta,),
            "response.output_text.delta": (transcript.assistant_delta,),
            "response.output_audio_transcript.done": (transcript.assistant_done,),
            "output_audio_buffer.started": (playback.buffer_started,),
            "output_audio_buffer.stopped": (playback.buffer_stopped,),
            "output_audio_buffer.cleared": (playback.buffer_cleared,),
            "error": (self._error,),
        }

    async def dispatch(self, ev: dict) -> None:
        """One server event: the parts first, then ``conv.on`` callbacks and waiters."""
        etype = ev.get("type", "")
        if self.recorder is not None:
            self.recorder.event("in", ev)
        for handler in self._events.get(etype, ()):
            await handler(ev)
        await self.signal(etype, ev)
        await self.notify("*", ev)

    async def _session_created(self, ev: dict) -> None:
        self.server_session = ev.get("session") or {}

    async def _session_updated(self, ev: dict) -> None:
        self.server_session = ev.get("session") or {}
        audio = self.server_session.get("audio") or {}
        fmt = (audio.get("output") or {}).get("format")
        if fmt:
            self.playback.set_format(AudioFormat.from_json(fmt))
        fmt_in = (audio.get("input") or {}).get("format")
        if fmt_in:
            self.microphone.set_format(AudioFormat.from_json(fmt_in))

    async def _speech_started(self, ev: dict) -> None:
        await self.barge_in.speech_started()
        await self.set_state("listening")

    async def _speech_stopped(self, ev: dict) -> None:
        self.latency.turn_ended(self.microphone.capture_time_of(float(ev.get("audio_end_ms", 0))))
        await self.set_state("thinking")

    async def _committed(self, ev: dict) -> None:
        self.latency.reply_expected()

    async def _response_created(self, ev: dict) -> None:
        self.active_response = (ev.get("response") or {}).get("id")
        self.latency.reply_expected()
        if self.state != "speaking":
            await self.set_state("thinking")

    async def _response_done(self, ev: dict) -> None:
        if (ev.get("response") or {}).get("id") == self.active_response:
            self.active_response = None
        self.latency.reply_done()

    async def _output_item_added(self, ev: dict) -> None:
        item = ev.get("item") or {}
        if item.get("type") == "message" and item.get("role") == "assistant":
            await self.transcript.item_added({"item": item})

    async def _error(self, ev: dict) -> None:
        err = ev.get("error") or {}
        await self.notify(
            "error",
            {"message": err.get("message", ""), "code": err.get("code"), "event_id": err.get("event_id")},
        )

    # --- state --------------------------------------------------------------------------

    async def set_state(self, state: str) -> None:
        """Used by the parts; applications read :attr:`state` or listen to ``state`` events."""
        if state != self.state:
            self.state = state
            await self.signal("state", {"state": state})

    async def _ticker(self) -> None:
        # Playback decides "speaking" (what the user hears), not the server's events.
        seen = self.player.audible_blocks
        while True:
            await asyncio.sleep(0.05)
            if self.connection.status != "connected":
                continue
            # Blocks played since the last look count even if they are over by now (a short
            # reply, or a tick delayed by a busy CPU): "speaking" is never skipped.
            played, seen = self.player.audible_blocks != seen, self.player.audible_blocks
            if self.player.is_playing() or played:
                await self.set_state("speaking")
            elif self.state == "speaking":
                await self.set_state("thinking" if self.active_response else "listening")
