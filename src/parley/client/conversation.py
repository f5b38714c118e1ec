"""The public Python API: one voice conversation with a Realtime server.

```python
conv = Conversation("http://127.0.0.1:8765/v1", api_key="local", audio=SoundDeviceAudio())

@conv.on("assistant.transcript.delta")
async def show(ev): print(ev["delta"], end="", flush=True)

async with conv:
    await conv.send_text("What's the capital of France?")
    await conv.wait_for("response.done")
```

What it does beyond forwarding events:

* **Barge-in.** Assistant audio goes through a :class:`Player` that knows
  which sample is at the speaker. On ``input_audio_buffer.speech_started``
  playback is flushed (silent from the next 20 ms block), and
  ``conversation.item.truncate`` carries the milliseconds actually handed to
  the speaker — not the milliseconds received — so the server drops the
  unheard part of the transcript. ``response.cancel`` is sent only when the
  session does not interrupt by itself (``interrupt_response`` false, or no
  turn detection). An optional local VAD pauses playback as soon as the user
  starts speaking, before the server's event arrives.
* **Echo.** Played audio feeds a reference-based echo canceller; or the mic
  is gated while the assistant speaks (half duplex).
* **Connection.** Clear errors for an unreachable server or a bad key;
  a dropped connection is re-established with exponential backoff and
  reported through ``connection`` events.

High-level events (``conv.on(name)``), besides every raw server event by its
``type`` and ``"*"`` for all of them: ``connection``, ``state``,
``user.transcript.delta|done``, ``assistant.transcript.delta|done|truncated``,
``interrupted``, ``turn.latency``, ``mic.level``, ``local_vad``, ``error``.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import numpy as np

from parley.client.codecs import InputEncoder, OutputDecoder, dbfs
from parley.client.devices import AudioDevice, NullAudio
from parley.client.events import Callback, EventHub
from parley.client.options import STATES, ClientOptions, Interruption, SessionOptions, Turn
from parley.client.player import Player
from parley.client.transport import ConnectionLost, Transport, TransportError
from parley.protocol import ids
from parley.protocol.audio_formats import CANONICAL_RATE, AudioFormat

if TYPE_CHECKING:
    from parley.client.aec import EchoCanceller
    from parley.client.local_vad import LocalVad

__all__ = ["STATES", "Callback", "ClientOptions", "Conversation", "Interruption", "SessionOptions", "Turn"]

log = logging.getLogger(__name__)


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
        self._transport_spec = transport
        self._transport_options = dict(transport_options or {})
        self.transport: Transport = self._make_transport()
        self.player = Player()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []
        self._mic_queue: asyncio.Queue[tuple[np.ndarray, float]] = asyncio.Queue(maxsize=500)
        self._closing = False
        self._connected = asyncio.Event()
        self.closed = asyncio.Event()
        self.state = "connecting"
        self.server_session: dict[str, Any] = {}
        self.turns: list[Turn] = []
        self._turn_by_item: dict[str, Turn] = {}
        self.interruptions: list[Interruption] = []
        self.latencies_ms: list[float] = []
        self.muted = False
        self.ptt_active = False
        self.mic_level_db = -120.0
        self._active_response: str | None = None
        self._rtc_item: str | None = None  # assistant item whose audio currently arrives over RTP
        self._turn_end_at: float | None = None
        self._awaiting_first_audio = False
        self._pending_local: tuple[str, int, float] | None = None  # (item, handed, paused_at)
        self._local_event: asyncio.Event = asyncio.Event()
        self._sent_samples = 0
        self._sent_marks: collections.deque[tuple[int, float]] = collections.deque(maxlen=3000)
        self._decoder = OutputDecoder(AudioFormat(self.session_options.output_format))
        self._encoder = InputEncoder(AudioFormat(self.session_options.input_format))
        self._aec: EchoCanceller | None = None
        self._vad: LocalVad | None = None
        self.connection_status = "connecting"
        self.session_count = 0
        self._level_last = 0.0
        self._bg: set[asyncio.Future] = set()

    # --- construction helpers -------------------------------------------------------

    def _make_transport(self) -> Transport:
        spec = self._transport_spec
        if not isinstance(spec, str):
            return spec
        if spec in ("websocket", "ws"):
            from parley.client.transport_ws import WebSocketTransport

            opts = {k: v for k, v in self._transport_options.items() if k in ("headers", "open_timeout")}
            return WebSocketTransport(self.url, self.api_key, self.session_options.model, **opts)
        if spec == "webrtc":
            from parley.client.transport_webrtc import WebRTCTransport

            return WebRTCTransport(
                self.url, self.api_key, self.session_options.model, **self._transport_options
            )
        raise ValueError(f"unknown transport {spec!r} (websocket or webrtc)")

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._bg.add(task)  # keep a reference until done (the loop holds only weak ones)
        task.add_done_callback(self._bg.discard)

    # --- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Conversation:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect, configure the session and start audio. Raises :class:`TransportError` if it cannot."""
        self._loop = asyncio.get_running_loop()
        self._closing = False
        if self.options.aec:
            from parley.client.aec import EchoCanceller

            aec = self._aec = EchoCanceller()
            self.player.on_played.append(aec.far)
        if self.options.local_vad:
            from parley.client.local_vad import LocalVad

            self._vad = LocalVad()
        if self.recorder is not None:
            self.player.on_played.append(self.recorder.speaker)
        await self._set_connection("connecting")
        await self._connect_once()
        self.audio.start(self.player, self._on_mic_thread)
        if self._aec is not None:
            self._aec.set_delay_ms(1000 * (self.audio.output_latency + self.audio.input_latency))
        self._tasks = [
            asyncio.create_task(self._connection_loop(), name="parley-recv"),
            asyncio.create_task(self._mic_sender(), name="parley-mic"),
            asyncio.create_task(self._ticker(), name="parley-tick"),
        ]

    async def close(self) -> None:
        """Stop audio, close the connection and the recording; safe to call at any time, twice."""
        if self._closing and self.closed.is_set():
            return
        self._closing = True
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
        self.connection_status = "closed"
        self.closed.set()
        await self._emit("connection", {"status": "closed", "message": "closed"})

    async def _set_connection(self, status: str, **extra: Any) -> None:
        self.connection_status = status
        if status in ("connecting", "reconnecting"):
            await self._set_state(status)
        await self._signal("connection", {"status": status, **extra})

    async def _connect_once(self) -> None:
        await self.transport.connect()
        if self.transport.audio_in_events is False:
            self.transport.on_audio = self._on_rtc_audio
        self.session_count += 1
        await self._configure()
        self._connected.set()
        await self._set_connection("connected", url=self.transport.url, session=self.session_count)
        await self._set_state("listening")

    async def _configure(self) -> None:
        """Send the session config and read back what the server will actually do."""
        await self.send({"type": "session.update", "session": self.session_options.to_session()})
        deadline = time.monotonic() + self.options.session_timeout
        while True:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                raise TransportError("The server did not answer session.update in time.")
            try:
                ev = await asyncio.wait_for(self.transport.recv(), timeout)
            except TimeoutError:
                continue
            await self._dispatch(ev)
            if ev.get("type") == "session.updated":
                return
            if ev.get("type") == "error" and (ev.get("error") or {}).get("event_id"):
                err = ev["error"]
                raise TransportError(
                    f"The server rejected the session settings: {err.get('message')}", fatal=True
                )

    async def _connection_loop(self) -> None:
        attempt = 0
        while not self._closing:
            try:
                while True:
                    ev = await self.transport.recv()
                    attempt = 0
                    await self._dispatch(ev)
            except asyncio.CancelledError:
                raise
            except (ConnectionLost, TransportError) as exc:
                if self._closing:
                    return
                self._connected.clear()
                await self._reset_after_drop()
                if not self.options.reconnect:
                    await self._set_connection("failed", message=str(exc))
                    self.closed.set()
                    return
                while not self._closing:
                    attempt += 1
                    if attempt > self.options.max_reconnect_attempts:
                        await self._set_connection(
                            "failed", message=f"gave up after {attempt - 1} attempts: {exc}"
                        )
                        self.closed.set()
                        return
                    delay = min(
                        self.options.reconnect_initial_delay * 2 ** (attempt - 1),
                        self.options.reconnect_max_delay,
                    )
                    await self._set_connection(
                        "reconnecting",
                        message=str(exc),
                        attempt=attempt,
                        max_attempts=self.options.max_reconnect_attempts,
                        delay=delay,
                    )
                    await asyncio.sleep(delay)
                    with contextlib.suppress(Exception):
                        await self.transport.close()
                    self.transport = self._make_transport()
                    try:
                        await self._connect_once()
                        break
                    except TransportError as exc2:
                        exc = exc2
                        if exc2.fatal:
                            await self._set_connection("failed", message=str(exc2))
                            self.closed.set()
                            return

    async def _reset_after_drop(self) -> None:
        # Whatever the old session was saying is gone; the new one starts with an empty memory.
        self.player.flush()
        self._active_response = None
        self._rtc_item = None
        self._pending_local = None
        self._awaiting_first_audio = False
        self._sent_samples = 0
        self._sent_marks.clear()

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
        self._turn_end_at = time.monotonic()
        self._awaiting_first_audio = True
        await self._set_state("thinking")
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
            if self.player.is_playing() or self._active_response:
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
        return await self._barge_in(trigger, cancel=True)

    # --- barge-in -----------------------------------------------------------------------

    def _auto_interrupts(self) -> bool:
        td = ((self.server_session.get("audio") or {}).get("input") or {}).get("turn_detection")
        if not td:
            return False
        return bool(td.get("interrupt_response"))  # missing = false, as both official SDKs read it

    async def _barge_in(
        self, trigger: str, *, cancel: bool, speech_started_at: float | None = None
    ) -> Interruption | None:
        now = time.monotonic()
        local = self._pending_local
        self._pending_local = None
        item = self.player.audible_item(now)
        if local is not None and item is None:
            item = local[0]
        self.player.flush()
        self._awaiting_first_audio = False
        result = None
        if item is not None:
            handed = self.player.handed(item)
            received = self.player.received(item)
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
            turn = self._turn_by_item.get(item)
            if turn is not None:
                turn.interrupted = True
            if self.transport.audio_in_events or self.options.truncate_over_webrtc:
                await self.send(
                    {
                        "type": "conversation.item.truncate",
                        "item_id": item,
                        "content_index": 0,
                        "audio_end_ms": audio_end_ms,
                    }
                )
        if self._active_response and (cancel or not self._auto_interrupts()):
            await self.send({"type": "response.cancel", "response_id": self._active_response})
            if result is not None:
                result.cancel_sent = True
            if not self.transport.audio_in_events:
                await self.send({"type": "output_audio_buffer.clear"})
        await self._set_state("listening")
        if result is not None:
            await self._signal("interrupted", result)
        return result

    # --- microphone path (audio thread) ---------------------------------------------

    def _on_mic_thread(self, pcm: np.ndarray, t: float) -> None:
        """Runs in the device's thread: echo cancellation and local VAD happen here, at capture time."""
        if self._aec is not None:
            pcm = self._aec.near(pcm)
        if self.recorder is not None:
            self.recorder.mic(pcm)
        if self._vad is not None:
            ev = self._vad.feed(pcm)
            if ev == "start" and self.player.is_playing() and self._pending_local is None:
                # Pause at once (this thread feeds the speaker); the loop confirms or resumes.
                self.player.pause()
                item = self.player.audible_item()
                if item is not None:
                    self._pending_local = (item, self.player.handed(item), time.monotonic())
            if ev is not None and self._loop is not None:
                self._loop.call_soon_threadsafe(self._local_vad_event, ev, t)
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._enqueue_mic, pcm, t)

    def _enqueue_mic(self, pcm: np.ndarray, t: float) -> None:
        if self._mic_queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._mic_queue.get_nowait()  # never let a stalled connection hold the mic back
        self._mic_queue.put_nowait((pcm, t))

    def _local_vad_event(self, ev: str, t: float) -> None:
        self._spawn(self._signal("local_vad", {"event": ev, "time": t}))
        if ev == "start" and self._pending_local is not None:
            self._spawn(self._local_timeout(self._pending_local))

    async def _local_timeout(self, pending: tuple[str, int, float]) -> None:
        await asyncio.sleep(self.options.local_vad_confirm_s)
        if self._pending_local is pending:
            # The server never confirmed: a cough, a door, our own echo. Carry on talking.
            self._pending_local = None
            self.player.resume()

    async def _mic_sender(self) -> None:
        while True:
            pcm, t = await self._mic_queue.get()
            now = time.monotonic()
            if now - self._level_last > 0.1:
                self._level_last = now
                self.mic_level_db = dbfs(pcm)
                await self._emit("mic.level", self.mic_level_db)
            if not self._connected.is_set():
                continue
            if self.session_options.turn_detection is None and not self.ptt_active:
                continue  # manual turns: only what is said while the key is held
            # Half duplex keeps the mic shut 200 ms past the last played sample: the room's echo tail.
            gated = self.muted or (
                self.options.half_duplex
                and (self.player.is_playing() or time.monotonic() < self.player.sounding_until() + 0.2)
            )
            # Silence (not nothing) keeps the server's audio clock in step with ours.
            out = np.zeros_like(pcm) if gated else pcm
            self._sent_marks.append((self._sent_samples, t))
            self._sent_samples += len(out)
            try:
                if self.transport.audio_in_events:
                    data = self._encoder(out)
                    if data:
                        await self.send(
                            {
                                "type": "input_audio_buffer.append",
                                "audio": base64.b64encode(data).decode("ascii"),
                            }
                        )
                else:
                    self.transport.send_audio(out)
            except ConnectionLost:
                continue  # the receive loop notices the drop and reconnects

    def _capture_time_of(self, audio_ms: float) -> float | None:
        """Monotonic capture time of the input sample at ``audio_ms`` (server offsets → our clock)."""
        sample = audio_ms * CANONICAL_RATE / 1000
        best = None
        for start, t in self._sent_marks:
            if start <= sample:
                best = t + (sample - start) / CANONICAL_RATE
            else:
                break
        return best

    # --- receiving ------------------------------------------------------------------------

    def _on_rtc_audio(self, pcm: np.ndarray) -> None:
        if self._rtc_item is not None:
            self._note_first_audio()
            self.player.write(self._rtc_item, pcm)

    def _note_first_audio(self) -> None:
        if self._awaiting_first_audio:
            self._awaiting_first_audio = False
            self._spawn(self._first_audio_latency())

    async def _first_audio_latency(self) -> None:
        start = self._turn_end_at
        # Wait until the first sample is at the speaker, not merely queued.
        for _ in range(200):
            item = self.player.audible_item()
            info = self.player.item(item) if item else None
            if info is not None and info.first_dac_time is not None:
                if start is not None:
                    ms = (info.first_dac_time - start) * 1000
                    self.latencies_ms.append(ms)
                    await self._signal("turn.latency", {"ms": ms, "item_id": item})
                return
            await asyncio.sleep(0.01)

    async def _dispatch(self, ev: dict) -> None:
        etype = ev.get("type", "")
        if self.recorder is not None:
            self.recorder.event("in", ev)
        handler = getattr(self, "_h_" + etype.replace(".", "_"), None)
        if handler is not None:
            await handler(ev)
        await self._signal(etype, ev)
        await self._emit("*", ev)

    async def _h_session_created(self, ev: dict) -> None:
        self.server_session = ev.get("session") or {}

    async def _h_session_updated(self, ev: dict) -> None:
        self.server_session = ev.get("session") or {}
        fmt = ((self.server_session.get("audio") or {}).get("output") or {}).get("format")
        if fmt:
            self._decoder = OutputDecoder(AudioFormat.from_json(fmt))
        fmt_in = ((self.server_session.get("audio") or {}).get("input") or {}).get("format")
        if fmt_in:
            self._encoder = InputEncoder(AudioFormat.from_json(fmt_in))

    async def _h_input_audio_buffer_speech_started(self, ev: dict) -> None:
        now = time.monotonic()
        playing = self.player.is_playing(now) or self._pending_local is not None
        if playing or (self._active_response and not self._auto_interrupts()):
            await self._barge_in("server_vad", cancel=False, speech_started_at=now)
        await self._set_state("listening")

    async def _h_input_audio_buffer_speech_stopped(self, ev: dict) -> None:
        end = self._capture_time_of(float(ev.get("audio_end_ms", 0)))
        self._turn_end_at = end if end is not None else time.monotonic()
        self._awaiting_first_audio = True
        await self._set_state("thinking")

    async def _h_input_audio_buffer_committed(self, ev: dict) -> None:
        if self._turn_end_at is None:
            self._turn_end_at = time.monotonic()
        self._awaiting_first_audio = True

    async def _h_conversation_item_added(self, ev: dict) -> None:
        item = ev.get("item") or {}
        if item.get("type") != "message" or not item.get("id") or item["id"] in self._turn_by_item:
            return
        text = ""
        for part in item.get("content") or []:
            text += part.get("text") or part.get("transcript") or ""
        turn = Turn(item.get("role", "?"), item["id"], text, done=bool(text))
        self.turns.append(turn)
        self._turn_by_item[item["id"]] = turn

    async def _h_conversation_item_input_audio_transcription_delta(self, ev: dict) -> None:
        turn = self._turn_by_item.get(ev.get("item_id", ""))
        if turn is not None:
            turn.text += ev.get("delta") or ""
        await self._signal(
            "user.transcript.delta", {"item_id": ev.get("item_id"), "delta": ev.get("delta") or ""}
        )

    async def _h_conversation_item_input_audio_transcription_completed(self, ev: dict) -> None:
        turn = self._turn_by_item.get(ev.get("item_id", ""))
        text = ev.get("transcript") or ""
        if turn is not None:
            turn.text, turn.done = text, True
        await self._signal("user.transcript.done", {"item_id": ev.get("item_id"), "text": text})

    async def _h_response_created(self, ev: dict) -> None:
        self._active_response = (ev.get("response") or {}).get("id")
        if self._turn_end_at is None:
            self._turn_end_at = time.monotonic()
        self._awaiting_first_audio = True
        if self.state != "speaking":
            await self._set_state("thinking")

    async def _h_response_done(self, ev: dict) -> None:
        rid = (ev.get("response") or {}).get("id")
        if rid == self._active_response:
            self._active_response = None
        self._turn_end_at = None

    async def _h_response_output_item_added(self, ev: dict) -> None:
        item = ev.get("item") or {}
        if item.get("type") == "message" and item.get("role") == "assistant":
            self._rtc_item = item.get("id")
            await self._h_conversation_item_added({"item": item})

    async def _h_response_output_audio_delta(self, ev: dict) -> None:
        pcm = self._decoder(base64.b64decode(ev.get("delta") or ""))
        self._note_first_audio()
        self.player.write(ev.get("item_id"), pcm)

    async def _h_response_output_audio_done(self, ev: dict) -> None:
        tail = self._decoder.flush()
        if len(tail):
            self.player.write(ev.get("item_id"), tail)

    async def _h_response_output_audio_transcript_delta(self, ev: dict) -> None:
        turn = self._turn_by_item.get(ev.get("item_id", ""))
        if turn is not None:
            turn.text += ev.get("delta") or ""
        await self._signal(
            "assistant.transcript.delta", {"item_id": ev.get("item_id"), "delta": ev.get("delta") or ""}
        )

    _h_response_output_text_delta = _h_response_output_audio_transcript_delta

    async def _h_response_output_audio_transcript_done(self, ev: dict) -> None:
        turn = self._turn_by_item.get(ev.get("item_id", ""))
        text = ev.get("transcript") or ""
        if turn is not None:
            turn.text, turn.done = text, True
        await self._signal("assistant.transcript.done", {"item_id": ev.get("item_id"), "text": text})

    async def _h_conversation_item_truncated(self, ev: dict) -> None:
        for intr in reversed(self.interruptions):
            if intr.item_id == ev.get("item_id") and intr.truncated is None:
                intr.truncated = ev
                break
        # The server dropped the unheard words; fetch what it kept so the display shows the same
        # (both official SDKs retrieve the item after a truncation too).
        self._spawn(self._refresh_truncated(ev.get("item_id", "")))

    async def _refresh_truncated(self, item_id: str) -> None:
        try:
            item = await self.retrieve_item(item_id)
        except Exception:
            return  # old servers without retrieve: the full transcript stays, marked interrupted
        text = "".join(p.get("transcript") or p.get("text") or "" for p in item.get("content") or [])
        turn = self._turn_by_item.get(item_id)
        if turn is not None:
            turn.text = text
        await self._signal("assistant.transcript.truncated", {"item_id": item_id, "text": text})

    async def _h_output_audio_buffer_started(self, ev: dict) -> None:
        if not self.transport.audio_in_events and self._rtc_item is None:
            self._rtc_item = ev.get("response_id")

    async def _h_output_audio_buffer_stopped(self, ev: dict) -> None:
        if not self.transport.audio_in_events:
            self._rtc_item = None

    async def _h_output_audio_buffer_cleared(self, ev: dict) -> None:
        if not self.transport.audio_in_events:
            self._rtc_item = None
            self.player.flush()

    async def _h_error(self, ev: dict) -> None:
        err = ev.get("error") or {}
        await self._emit(
            "error",
            {"message": err.get("message", ""), "code": err.get("code"), "event_id": err.get("event_id")},
        )

    # --- state --------------------------------------------------------------------------

    async def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            await self._signal("state", {"state": state})

    async def _ticker(self) -> None:
        # Playback decides "speaking" (what the user hears), not the server's events.
        while True:
            await asyncio.sleep(0.05)
            if self.connection_status != "connected":
                continue
            if self.player.is_playing():
                await self._set_state("speaking")
            elif self.state == "speaking":
                await self._set_state("thinking" if self._active_response else "listening")
