"""A Realtime session: the protocol state machine, independent of any transport.

Transports feed it client events (:meth:`RealtimeSession.receive`) and, for
WebRTC, decoded microphone audio (:meth:`feed_audio`); it answers through
attached sinks. Every handler runs synchronously on the event loop, so events
are handled strictly in order and a barge-in cancels a response before the
next frame of audio is even looked at. Only model work runs in tasks.

Reading order: construction and transport API → client-event handlers (one
per GA event type, in the order of the spec) → the input side (audio, turn
detection, commits, transcription) → responses (creation, speculation,
barge-in) → timers and metrics.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from parley.engine import tool_router
from parley.engine.config import EngineConfig
from parley.engine.conversation import Conversation, Item
from parley.engine.generation import Generation
from parley.engine.input_buffer import InputAudioBuffer, ms_to_samples, samples_to_ms
from parley.engine.mcp_tools import McpTools
from parley.engine.models.base import ChatRequest, ToolChoice, ToolSpec, Transcript
from parley.engine.models.priority import PRIORITY
from parley.engine.noise import NoiseSuppressor
from parley.engine.prompt import build_messages
from parley.engine.response import McpHooks, MediaOutput, ResponseParams, ResponseRunner
from parley.engine.speculation import Speculation, Speculator
from parley.engine.turn_detection import (
    SEMANTIC_TRANSCRIPT_WAIT_MS,
    Look,
    Probe,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    TurnDetector,
    turn_complete,
    turn_sure,
)
from parley.engine.turn_metrics import TurnMetrics
from parley.protocol import close_codes, ids
from parley.protocol.audio_formats import CANONICAL_RATE, AudioFormat, InputDecoder, int16_to_float, resample
from parley.protocol.client_events import parse_client_event
from parley.protocol.errors import ProtocolError, invalid_event, invalid_value
from parley.protocol.requests import check_item, check_response
from parley.protocol.session_config import apply_update, default_session, wire_session
from parley.protocol.validation import EventValidationError, validate_server_event

if TYPE_CHECKING:
    from parley.engine.models.registry import ModelSet

log = logging.getLogger(__name__)

# Generations one response may run around MCP calls before the model must answer in words.
MCP_MAX_ROUNDS = 4

MAX_APPEND_BYTES = 15 * 1024 * 1024  # per input_audio_buffer.append, as on OpenAI
MIN_COMMIT_MS = 100
IDLE_PROMPT = "The user has been silent for a while. Briefly check whether they are still there."


class EventSink(Protocol):
    """A consumer of server events (a WebSocket, a data channel, a sideband socket)."""

    extensions: bool  # also wants Parley's own ``parley.*`` events (opt-in)

    def send(self, event: dict[str, Any]) -> None: ...

    def close(self) -> None:
        """The session has ended; no more events will come."""
        ...


def _transcript_of(stt: asyncio.Task[Transcript] | None) -> str | None:
    """A finished transcription's text; None while it runs, or if it was cancelled or failed."""
    if stt is None or not stt.done() or stt.cancelled() or stt.exception() is not None:
        return None
    return stt.result().text


class RealtimeSession:
    def __init__(
        self,
        models: ModelSet,
        config: EngineConfig,
        *,
        model: str | None = None,
        initial: dict[str, Any] | None = None,
        media: MediaOutput | None = None,
        on_close: Callable[[int, str], None] | None = None,
    ) -> None:
        self.models = models
        self.config = config
        self.media = media
        self.on_close = on_close
        self.session = default_session(model, expires_in_s=config.max_session_seconds)
        if initial:
            self.session = apply_update(self.session, {"type": "realtime", **initial})
        self.conversation = Conversation()
        self.buffer = InputAudioBuffer(config.max_input_buffer_seconds)
        self.sinks: list[EventSink] = []
        self.responses: dict[str, ResponseRunner] = {}  # in progress, including out-of-band
        self.active: ResponseRunner | None = None  # the one writing to the default conversation
        self.closed = False
        self.created_at = time.monotonic()
        self._config_version = 0
        self._voice_locked = False
        self._decoder = InputDecoder(self._input_format)
        self._turns: TurnDetector | None = None
        self._denoiser: NoiseSuppressor | None = None  # audio.input.noise_reduction
        self.mcp = McpTools(
            emit=self.emit, add_item=self._add_mcp_item, done_item=self._mcp_item_done, spawn=self._spawn
        )
        self._mcp_answered: set[str] = set()  # approval requests whose response has run (or been refused)
        self._speech_item_id: str | None = None  # id promised in speech_started
        self._speculator = Speculator(self._spawn)
        self._transcriptions: dict[str, asyncio.Task[Transcript]] = {}
        self._metrics = TurnMetrics()
        self._idle_timer: asyncio.TimerHandle | None = None
        self._deferred_turn: Item | None = None  # a user turn waiting for the active response to end
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._prefill_task: asyncio.Task[Any] | None = None
        self._configure_turn_detection()

    # ------------------------------------------------------------------ API

    @property
    def id(self) -> str:
        return self.session["id"]

    def attach(self, sink: EventSink) -> None:
        self.sinks.append(sink)

    def detach(self, sink: EventSink) -> None:
        with contextlib.suppress(ValueError):
            self.sinks.remove(sink)

    def open(self) -> None:
        """Send ``session.created`` (the first event of every connection) and start the clock."""
        self.emit({"type": "session.created", "session": wire_session(self.session)})
        self._configure_mcp()
        loop = asyncio.get_running_loop()
        self._expiry_timer = loop.call_later(self.config.max_session_seconds, self._expire)
        self._prefill()

    async def prompt_ready(self) -> None:
        """Wait until the model has evaluated this session's prompt (instructions, tools, items)."""
        if self._prefill_task is not None:
            await asyncio.shield(self._prefill_task)

    def receive(self, raw: str | bytes | dict[str, Any]) -> None:
        """Handle one client event; a bad one becomes an ``error`` event and changes nothing."""
        if self.closed:
            return
        client_event_id = None
        try:
            if isinstance(raw, str | bytes) and len(raw) > self.config.max_message_bytes:
                raise ProtocolError(
                    "message_too_large",
                    f"The message is {len(raw)} bytes; the limit is {self.config.max_message_bytes} bytes.",
                )
            event = parse_client_event(raw)
            client_event_id = event.get("event_id")
            handler = self._handlers()[event["type"]]
            handler(event)
        except ProtocolError as err:
            self.emit_error(err, client_event_id or _peek_event_id(raw))
        except Exception as exc:  # a bug must not end the session
            log.exception("unexpected error handling a client event")
            self.emit_error(
                ProtocolError("server_error", f"Internal error: {exc}", type="server_error"), client_event_id
            )

    def feed_audio(self, pcm: np.ndarray) -> None:
        """Canonical 24 kHz int16 microphone audio from a media transport (WebRTC)."""
        if not self.closed:
            self._ingest(pcm)

    async def close(self, *, keep_prompt: bool = False) -> None:
        """End the session. ``keep_prompt``: the model keeps this session's evaluated prompt for
        good (a prepared prompt), instead of as one of the few recent donors."""
        if self.closed:
            return
        self.closed = True
        for runner in list(self.responses.values()):
            runner.cancel("client_cancelled")
        self._speculator.drop()
        for timer in (self._idle_timer, self._expiry_timer):
            if timer:
                timer.cancel()
        tasks = [*self._tasks, *self._transcriptions.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if not keep_prompt:
            self.models.llm.forget(self.id)
        for sink in self.sinks:
            sink.close()
        self.sinks.clear()

    # ------------------------------------------------------------- emitting

    def emit(self, event: dict[str, Any]) -> None:
        event = {
            "type": event["type"],
            "event_id": ids.event_id(),
            **{k: v for k, v in event.items() if k != "type"},
        }
        extension = event["type"].startswith("parley.")
        if self.config.validate_events and not extension:
            try:
                validate_server_event(event)
            except EventValidationError:
                log.exception("engine produced an invalid server event")
                raise
        for sink in list(self.sinks):
            if extension and not sink.extensions:
                continue
            sink.send(event)

    def emit_error(self, err: ProtocolError, client_event_id: str | None = None) -> None:
        self.emit(
            {
                "type": "error",
                "error": {
                    "type": err.type,
                    "code": err.code,
                    "message": err.message,
                    "param": err.param,
                    "event_id": client_event_id,
                },
            }
        )

    # ------------------------------------------------------------- handlers

    def _handlers(self) -> dict[str, Callable[[dict[str, Any]], None]]:
        return {
            "session.update": self._on_session_update,
            "input_audio_buffer.append": self._on_append,
            "input_audio_buffer.commit": self._on_commit,
            "input_audio_buffer.clear": self._on_clear,
            "conversation.item.create": self._on_item_create,
            "conversation.item.retrieve": self._on_item_retrieve,
            "conversation.item.truncate": self._on_item_truncate,
            "conversation.item.delete": self._on_item_delete,
            "response.create": self._on_response_create,
            "response.cancel": self._on_response_cancel,
            "output_audio_buffer.clear": self._on_output_clear,
        }

    def _on_session_update(self, event: dict[str, Any]) -> None:
        before = self.session
        self.session = apply_update(before, event["session"], audio_started=self._voice_locked)
        self._config_version += 1
        if self.session["audio"]["input"]["format"] != before["audio"]["input"]["format"]:
            self._decoder = InputDecoder(self._input_format)
        if self.session["audio"]["input"]["turn_detection"] != before["audio"]["input"]["turn_detection"]:
            self._configure_turn_detection()
        self.emit({"type": "session.updated", "session": wire_session(self.session)})
        self._configure_mcp()
        if any(self.session.get(k) != before.get(k) for k in ("instructions", "tools", "tool_choice")):
            self._prefill()

    def _on_append(self, event: dict[str, Any]) -> None:
        if self.media is not None:
            # Over WebRTC the microphone arrives over RTP; mixing in appended audio would corrupt it.
            raise invalid_event(
                "input_audio_buffer.append is not supported on WebRTC calls; "
                "the microphone audio arrives over RTP."
            )
        audio = event["audio"]
        if len(audio) > MAX_APPEND_BYTES * 4 // 3 + 4:
            raise ProtocolError("audio_too_large", "Each append may carry at most 15 MiB of audio.", "audio")
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise invalid_value("Invalid 'audio': not valid base64.", "audio") from None
        if data:
            self._ingest(self._decoder(data))

    def _on_commit(self, event: dict[str, Any]) -> None:
        available = self.buffer.duration_ms
        if available < MIN_COMMIT_MS:
            raise ProtocolError(
                "input_audio_buffer_commit_empty",
                f"Error committing input audio buffer: buffer too small. Expected at least {MIN_COMMIT_MS}ms "
                f"of audio, but buffer only has {available:.2f}ms of audio.",
            )
        item_id = self._speech_item_id or ids.item_id()
        self._speech_item_id = None
        self._speculator.drop()
        if self._turns:
            self._turns.reset()
        self._commit(self.buffer.take_all(), item_id)

    def _on_clear(self, event: dict[str, Any]) -> None:
        self.buffer.clear()
        self._speech_item_id = None
        self._speculator.drop()
        if self._turns:
            self._turns.reset()
        self.emit({"type": "input_audio_buffer.cleared"})

    def _on_item_create(self, event: dict[str, Any]) -> None:
        item = self._item_from_client(event["item"])
        previous = self.conversation.insert(item, event.get("previous_item_id"))
        view = Conversation.wire_view(item)
        self.emit({"type": "conversation.item.added", "previous_item_id": previous, "item": view})
        self.emit({"type": "conversation.item.done", "previous_item_id": previous, "item": view})
        if item.audio is not None and item.heard_text is None:
            self._start_transcription(item)

    def _on_item_retrieve(self, event: dict[str, Any]) -> None:
        item = self.conversation.get(event["item_id"])
        self.emit(
            {
                "type": "conversation.item.retrieved",
                "item": Conversation.retrieved_view(item, self._output_format),
            }
        )

    def _on_item_truncate(self, event: dict[str, Any]) -> None:
        self.conversation.truncate(event["item_id"], event["content_index"], event["audio_end_ms"])
        self.emit(
            {
                "type": "conversation.item.truncated",
                "item_id": event["item_id"],
                "content_index": event["content_index"],
                "audio_end_ms": event["audio_end_ms"],
            }
        )

    def _on_item_delete(self, event: dict[str, Any]) -> None:
        self.conversation.delete(event["item_id"])
        self._transcriptions.pop(event["item_id"], None)
        self.emit({"type": "conversation.item.deleted", "item_id": event["item_id"]})

    def _on_response_create(self, event: dict[str, Any]) -> None:
        if self.session["type"] != "realtime":
            raise invalid_event("Responses are not available in a transcription session.")
        params = self._response_params(event.get("response") or {})
        if params.conversation == "auto" and self.active is not None:
            raise ProtocolError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self.active.id}. "
                "Wait until the response is finished before creating a new one.",
            )
        self._start_response(params)

    def _on_response_cancel(self, event: dict[str, Any]) -> None:
        response_id = event.get("response_id")
        runner = self.responses.get(response_id) if response_id else self.active
        if runner is None or runner.finished:
            raise ProtocolError("response_cancel_not_active", "Cancellation failed: no active response found")
        runner.cancel("client_cancelled")

    def _on_output_clear(self, event: dict[str, Any]) -> None:
        if self.media is None:
            raise invalid_event("output_audio_buffer.clear is only supported for WebRTC and SIP connections.")
        self._clear_media(truncate=True)

    # ------------------------------------------------------------ input side

    @property
    def _input_format(self) -> AudioFormat:
        return AudioFormat.from_json(self.session["audio"]["input"]["format"])

    @property
    def _output_format(self) -> AudioFormat:
        return AudioFormat.from_json(self.session["audio"]["output"]["format"])

    def _configure_turn_detection(self) -> None:
        td = self.session["audio"]["input"]["turn_detection"]
        if td is None:
            self._turns = None
            self._speculator.drop()
            return
        if self._turns is None:
            vad = self.models.vad
            self._turns = TurnDetector(
                vad.stream(),
                vad.sample_rate,
                vad.frame_samples,
                td,
                min_speech_ms=self.config.vad_min_speech_ms,
                probe_ms=self.config.speculation_probe_ms,
                position=self.buffer.end,
            )
        else:
            self._turns.configure(td)

    def _ingest(self, pcm: np.ndarray) -> None:
        pcm = self._denoise(pcm)
        self.buffer.append(pcm)
        if self._turns is None:
            return
        for signal in self._turns.feed(pcm, self.buffer.start):
            if isinstance(signal, SpeechStarted):
                self._on_speech_started(signal)
            elif isinstance(signal, Probe):
                self._on_probe(signal)
            elif isinstance(signal, Look):
                self._on_look(signal)
            elif isinstance(signal, SpeechResumed):
                self._speculator.drop()
            elif isinstance(signal, SpeechStopped):
                self._on_speech_stopped(signal)
        if not self._turns.speaking:
            # Between turns only the pre-roll can ever be committed by VAD; keep a little more.
            keep = ms_to_samples(
                self.session["audio"]["input"]["turn_detection"].get("prefix_padding_ms", 300) + 2000
            )
            self.buffer.drop_before(self.buffer.end - keep)

    def _denoise(self, pcm: np.ndarray) -> np.ndarray:
        """Noise suppression before anything hears the input (VAD, buffer, Whisper), when asked for."""
        config = self.session["audio"]["input"]["noise_reduction"]
        if config is None:
            self._denoiser = None
            return pcm
        if self._denoiser is None or self._denoiser.kind != config["type"]:
            self._denoiser = NoiseSuppressor(config["type"])
        return self._denoiser(pcm)

    # ------------------------------------------------------------------ MCP

    def _configure_mcp(self) -> None:
        if self.session["type"] == "realtime":
            self.mcp.configure(self.session.get("tools") or [])

    def _add_mcp_item(self, wire: dict[str, Any]) -> None:
        item = Item(wire=wire)
        previous = self.conversation.insert(item)
        self.emit({"type": "conversation.item.added", "previous_item_id": previous, "item": wire_view(item)})

    def _mcp_item_done(self, item_id: str, tools: list[dict[str, Any]] | None) -> None:
        if self.closed or item_id not in self.conversation:
            return  # deleted meanwhile
        item = self.conversation.get(item_id)
        item.wire["tools"] = tools or []
        self.conversation.touch()
        if tools:
            self._prefill()  # the prompt now offers these tools
        items = self.conversation.items()
        position = items.index(item)
        previous = items[position - 1].id if position > 0 else None
        self.emit({"type": "conversation.item.done", "previous_item_id": previous, "item": wire_view(item)})

    def _mcp_hooks(self, params: ResponseParams, extra_instructions: str | None) -> McpHooks | None:
        labels = {t["server_label"] for t in params.tools if t.get("type") == "mcp"}
        if not labels:
            return None
        approved = []
        requests = {
            i.id: i.wire for i in self.conversation.items() if i.wire.get("type") == "mcp_approval_request"
        }
        for item in self.conversation.items():
            wire = item.wire
            if (
                wire.get("type") != "mcp_approval_response"
                or wire["approval_request_id"] in self._mcp_answered
            ):
                continue
            request = requests.get(wire["approval_request_id"])
            server = self.mcp.server(request["server_label"]) if request else None
            self._mcp_answered.add(wire["approval_request_id"])
            if wire["approve"] and request is not None and server is not None:
                approved.append((request, server))

        rounds = 0

        async def continue_with(runner: ResponseRunner) -> Generation:
            # A required or named tool was called already; after MCP_MAX_ROUNDS calls the model
            # must answer in words (a server that keeps inviting calls cannot loop a response).
            nonlocal rounds
            rounds += 1
            choice = "none" if rounds >= MCP_MAX_ROUNDS else "auto"
            extra = None if runner.in_conversation else runner.output
            return await self._generation_for(
                dataclasses.replace(params, tool_choice=choice), extra_instructions, extra_items=extra
            )

        return McpHooks(
            find=lambda name: self.mcp.find(name, labels), continue_with=continue_with, approved=approved
        )

    def _tool_specs(self, params: ResponseParams) -> list[ToolSpec]:
        """Function tools, then the listed MCP tools of the servers in ``params.tools`` (by name,
        as function-like tools: the model calls them the same way)."""
        specs = [
            ToolSpec(t["name"], t.get("description") or "", t.get("parameters") or {})
            for t in params.tools
            if t.get("type", "function") == "function"
        ]
        labels = {t["server_label"] for t in params.tools if t.get("type") == "mcp"}
        if labels:
            taken = {spec.name for spec in specs}
            for _server, tool in self.mcp.tools(labels):
                if tool["name"] not in taken:
                    taken.add(tool["name"])
                    specs.append(ToolSpec(tool["name"], tool.get("description") or "", tool["input_schema"]))
        return specs

    def _on_speech_started(self, signal: SpeechStarted) -> None:
        self._cancel_idle_timer()
        self._speech_item_id = ids.item_id()
        self.emit(
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": samples_to_ms(signal.start),
                "item_id": self._speech_item_id,
            }
        )
        td = self.session["audio"]["input"]["turn_detection"] or {}
        if td.get("interrupt_response", True):
            if self.active is not None:
                self.active.cancel("turn_detected")
            if self.media is not None:
                self._clear_media(truncate=True)

    def _on_probe(self, probe: Probe) -> None:
        if (
            not self.config.speculative
            and self.session["audio"]["input"]["turn_detection"]["type"] != "semantic_vad"
        ):
            return
        audio = self.buffer.slice(probe.start, probe.end)
        spec = self._speculator.start(
            probe.start, probe.end, self.conversation.version, self._config_version, self._transcribe(audio)
        )
        td = self.session["audio"]["input"]["turn_detection"]
        if (
            self.config.speculative
            and td.get("create_response", True)
            and self.active is None
            and self.session["type"] == "realtime"
        ):
            self._speculator.generate(spec, self._speculative_generation(spec))

    def _on_look(self, look: Look) -> None:
        """Judge the pause with the audio so far; the transcript is the speculation probe's."""
        if self._turns is None:
            return
        spec = self._speculator.current
        stt = spec.stt if spec is not None and spec.start == look.start else None
        self._spawn(
            self._semantic_decision(
                stt,
                self.buffer.slice(look.start, look.end),
                self._turns.pause,
                sentence_suffices_at=look.sentence_suffices_at,
                first=look.first,
            )
        )

    async def _semantic_decision(
        self,
        stt: asyncio.Task[Transcript] | None,
        pcm: np.ndarray,
        pause: int,
        *,
        sentence_suffices_at: float | None = None,
        first: bool = False,
    ) -> None:
        """End-of-turn model and transcript of the speech so far → this pause's wait.

        Runs once per pause (never per frame); the model call and the transcription run
        side by side in worker threads. A decision for a pause that is over is dropped.
        """
        turn_model = getattr(self.models, "turn", None)
        probability: float | None = None
        if turn_model is not None:
            audio = int16_to_float(resample(pcm, CANONICAL_RATE, turn_model.sample_rate))
            try:
                with PRIORITY.urgent():  # the user is waiting on this decision
                    probability = await turn_model.probability(audio)
            except Exception:
                log.exception("end-of-turn model failed; the transcript decides this pause")
        late = False
        if stt is not None:
            wait = SEMANTIC_TRANSCRIPT_WAIT_MS / 1000 if probability is not None else None
            await asyncio.wait([stt], timeout=wait)
            late = not stt.done()
        # Late, cancelled (speech resumed, or superseded) or failed: the model alone decides.
        if not self._apply_look(probability, _transcript_of(stt), pause, sentence_suffices_at, first):
            return
        if late and stt is not None:
            # Under load Whisper queues behind other sessions' turns. A model-only verdict of
            # "unfinished" would hold the turn until the look at 2 s; the transcript, once it
            # comes, may show a finished sentence and end the turn then (never cancel it: the
            # speculative reply uses it too).
            await asyncio.wait([stt])
            turns = self._turns
            if turns is not None and turns.required_silence_ms >= turns.max_wait_ms:
                self._apply_look(probability, _transcript_of(stt), pause, sentence_suffices_at, first)

    def _apply_look(
        self,
        probability: float | None,
        transcript: str | None,
        pause: int,
        sentence_suffices_at: float | None,
        first: bool,
    ) -> bool:
        """One look's verdict → the pause's wait; False when the pause is over or not semantic."""
        if self._turns is None or self._turns.kind != "semantic_vad":
            return False
        eagerness = self._turns.eagerness
        complete = turn_complete(
            probability, transcript, eagerness.threshold, sentence_suffices_at=sentence_suffices_at
        )
        sure = first and turn_sure(probability, transcript, eagerness)
        applied = self._turns.decide(complete, pause, sure=sure)
        log.debug(
            "turn look: pause %d, P=%s, transcript %r, complete=%s sure=%s applied=%s",
            pause,
            None if probability is None else round(probability, 3),
            transcript,
            complete,
            sure,
            applied,
        )
        return applied

    def _on_speech_stopped(self, signal: SpeechStopped) -> None:
        item_id = self._speech_item_id or ids.item_id()
        self._speech_item_id = None
        self.emit(
            {
                "type": "input_audio_buffer.speech_stopped",
                "audio_end_ms": samples_to_ms(signal.end),
                "item_id": item_id,
            }
        )
        times = self._metrics.begin(item_id, speech_stopped=time.perf_counter())
        spec = self._speculator.adopt(signal.start, self.conversation.version, self._config_version)
        audio = self.buffer.take(signal.start, signal.end)
        item = self._commit(audio, item_id, speculative_stt=spec.stt if spec else None)
        times.speculative = spec is not None and spec.generation is not None
        if spec is not None:
            times.stt_started, times.stt_done = spec.started, spec.stt_done
        td = self.session["audio"]["input"]["turn_detection"] or {}
        if self.session["type"] != "realtime" or not td.get("create_response", True):
            if spec:
                spec.cancel_generation()
            return
        if self.active is not None:
            # The user spoke over a response that is not interruptible: answer after it.
            if spec:
                spec.cancel_generation()
            self._deferred_turn = item
            return
        params = self._response_params({})
        self._start_response(params, speculation=spec, user_item=item)

    def _commit(
        self, audio: np.ndarray, item_id: str, speculative_stt: asyncio.Task[Transcript] | None = None
    ) -> Item:
        item = Item(
            wire={
                "id": item_id,
                "object": "realtime.item",
                "type": "message",
                "status": "completed",
                "role": "user",
                "content": [{"type": "input_audio", "transcript": None}],
            },
            audio=audio,
        )
        previous = self.conversation.insert(item)
        self.emit({"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item_id})
        view = Conversation.wire_view(item)
        self.emit({"type": "conversation.item.added", "previous_item_id": previous, "item": view})
        self.emit({"type": "conversation.item.done", "previous_item_id": previous, "item": view})
        self._start_transcription(item, speculative_stt)
        return item

    # ----------------------------------------------------- transcription

    async def _transcribe(self, pcm: np.ndarray) -> Transcript:
        stt = self.models.stt
        audio = int16_to_float(resample(pcm, CANONICAL_RATE, stt.sample_rate))
        config = self.session["audio"]["input"]["transcription"] or {}
        languages = config.get("languages")
        # Several allowed languages: Whisper detects among them; otherwise the one given
        # (or the engine's default).
        language = config.get("language") or (None if languages else self.config.models.stt_language)
        with PRIORITY.urgent():  # the user is waiting on this; background decoding pauses
            return await stt.transcribe(
                audio, language=language, prompt=_whisper_prompt(config), languages=languages
            )

    def _start_transcription(self, item: Item, speculative: asyncio.Task[Transcript] | None = None) -> None:
        assert item.audio is not None
        transcription = self.session["audio"]["input"]["transcription"]
        enabled = transcription is not None
        report_language = bool((transcription or {}).get("languages"))
        times = self._metrics.get(item.id)
        if times and speculative is None:
            times.stt_started = time.perf_counter()
        task = speculative or self._spawn(self._transcribe(item.audio))
        self._transcriptions[item.id] = task

        def done(t: asyncio.Task[Transcript]) -> None:
            if self.closed or t.cancelled() or item.id not in self.conversation:
                return
            if times and times.stt_done is None:
                times.stt_done = time.perf_counter()
            error = t.exception()
            if error is not None:
                item.heard_text = ""
                if enabled:
                    self.emit(
                        {
                            "type": "conversation.item.input_audio_transcription.failed",
                            "item_id": item.id,
                            "content_index": 0,
                            "error": {
                                "type": "server_error",
                                "code": "transcription_failed",
                                "message": str(error),
                                "param": None,
                            },
                        }
                    )
                return
            result = t.result()
            text = result.text.strip()
            item.heard_text = text
            if enabled:
                item.wire["content"][0]["transcript"] = text
                if text:
                    self.emit(
                        {
                            "type": "conversation.item.input_audio_transcription.delta",
                            "item_id": item.id,
                            "content_index": 0,
                            "delta": text,
                        }
                    )
                self.emit(
                    {
                        "type": "conversation.item.input_audio_transcription.completed",
                        "item_id": item.id,
                        "content_index": 0,
                        "transcript": text,
                        "usage": {"type": "duration", "seconds": round(item.audio_ms / 1000, 3)},
                        # Asked for with ``languages``: the one Whisper detected among them.
                        **(
                            {"languages": [{"code": result.language}]}
                            if report_language and result.language
                            else {}
                        ),
                    }
                )

        task.add_done_callback(done)

    async def _await_transcripts(self, items: list[Item]) -> None:
        for item in items:
            task = self._transcriptions.get(item.id)
            if task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(task)
                if item.heard_text is None and task.done() and not task.cancelled() and not task.exception():
                    item.heard_text = task.result().text.strip()

    # ------------------------------------------------------------- responses

    def _response_params(self, overrides: dict[str, Any]) -> ResponseParams:
        return ResponseParams(**check_response(overrides, self.session, self._input_item))

    def _input_item(self, index: int, entry: Any) -> Item:
        """One ``response.input`` entry: a reference to a conversation item, or a new item."""
        if isinstance(entry, dict) and entry.get("type") == "item_reference":
            return self.conversation.get(entry.get("id", ""), f"response.input[{index}].id")
        return self._item_from_client(
            parse_client_event({"type": "conversation.item.create", "item": entry})["item"]
        )

    def _start_response(
        self,
        params: ResponseParams,
        *,
        speculation: Speculation | None = None,
        user_item: Item | None = None,
        extra_instructions: str | None = None,
    ) -> ResponseRunner:
        runner = ResponseRunner(self, params)
        if params.conversation == "auto":  # the list item goes into the conversation
            self.mcp.ensure(params.tools)
        runner.mcp = self._mcp_hooks(params, extra_instructions)
        self.responses[runner.id] = runner
        if params.conversation == "auto":
            self.active = runner
        if user_item is not None:
            self._metrics.answered_by(runner.id, user_item.id)

        async def prepare(r: ResponseRunner) -> Generation:
            if speculation is not None and speculation.generation is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    return await speculation.generation
            return await self._generation_for(params, extra_instructions)

        runner.start(prepare)
        return runner

    async def _generation_for(
        self,
        params: ResponseParams,
        extra_instructions: str | None = None,
        provisional: Item | None = None,
        extra_items: list[Item] | None = None,
    ) -> Generation:
        items = params.input_items if params.input_items is not None else self.conversation.items()
        if provisional is not None:
            items = [*items, provisional]
        if extra_items:  # an out-of-band response's own MCP calls, for its next generation
            items = [*items, *extra_items]
        await self._await_transcripts(items)
        if any(t.get("type") == "mcp" for t in params.tools):
            await self.mcp.ready()  # the model needs the MCP servers' tools
        request = self._chat_request(params, items, extra_instructions)
        tts = self.models.tts if params.audio else None
        if tts is not None:
            self._voice_locked = True
        return Generation(
            self.models.llm,
            tts,
            request,
            voice=params.voice,
            speed=params.speed,
            stage_timeout=self.config.stage_timeout_seconds,
        ).start()

    def _chat_request(
        self, params: ResponseParams, items: list[Item], extra_instructions: str | None = None
    ) -> ChatRequest:
        instructions = params.instructions + (f"\n\n{extra_instructions}" if extra_instructions else "")
        request = ChatRequest(
            messages=build_messages(
                instructions,
                items,
                truncation=self.session.get("truncation", "auto"),
                context_tokens=getattr(self.models.llm, "n_ctx", None),
                max_output_tokens=None
                if params.max_output_tokens == "inf"
                else int(params.max_output_tokens),
            ),
            tools=self._tool_specs(params),
            tool_choice=_tool_choice(params.tool_choice),
            max_tokens=None if params.max_output_tokens == "inf" else int(params.max_output_tokens),
            parallel_tool_calls=params.parallel_tool_calls,
            reasoning_effort=params.reasoning_effort,
            # Only responses that write to this session's conversation share its prompt state.
            cache_key=self.id if params.conversation == "auto" else None,
        )
        if request.tool_choice.mode == "auto" and not self.models.llm.decides_tools:
            request.tool_choice = tool_router.choose(request.messages, request.tools)
        return request

    def _prefill(self) -> None:
        """Evaluate the prompt (instructions, tools, the conversation so far) before it is needed.

        Runs when the session starts and when its instructions or tools change: the user is
        still getting ready to speak, and the first reply then waits only for its own turn.
        """
        if self._prefill_task is not None and not self._prefill_task.done():
            self._prefill_task.cancel()  # the prompt changed again; the newer one wins
        request = self._chat_request(self._response_params({}), self.conversation.items())
        self._prefill_task = self._spawn(self.models.llm.prefill(request))

    async def _speculative_generation(self, spec: Speculation) -> Generation:
        transcript = await spec.stt
        provisional = Item(
            wire={
                "id": "speculative",
                "type": "message",
                "role": "user",
                "content": [{"type": "input_audio", "transcript": None}],
            },
            heard_text=transcript.text.strip(),
        )
        return await self._generation_for(self._response_params({}), provisional=provisional)

    def response_finished(self, runner: ResponseRunner) -> None:
        """Called by a runner right after it emitted ``response.done``."""
        self.responses.pop(runner.id, None)
        if self.active is runner:
            self.active = None
        self._emit_metrics(runner)
        deferred, self._deferred_turn = self._deferred_turn, None
        if (
            deferred is not None
            and self.active is None
            and deferred.id in self.conversation
            and not self.closed
        ):
            self._start_response(self._response_params({}), user_item=deferred)
        elif runner.status == "completed":
            self._arm_idle_timer(runner)

    def _clear_media(self, *, truncate: bool) -> None:
        assert self.media is not None
        position = self.media.clear()
        if position is None:
            return
        self.emit({"type": "output_audio_buffer.cleared", "response_id": position.response_id})
        if truncate and position.item_id in self.conversation:
            item = self.conversation.get(position.item_id)
            end_ms = min(position.played_ms, int(item.audio_ms))
            self.conversation.truncate(position.item_id, 0, end_ms)
            self.emit(
                {
                    "type": "conversation.item.truncated",
                    "item_id": position.item_id,
                    "content_index": 0,
                    "audio_end_ms": end_ms,
                }
            )

    # Media transports report playout so clients can follow the speaker.
    def playout_started(self, response_id: str) -> None:
        self.emit({"type": "output_audio_buffer.started", "response_id": response_id})

    def playout_stopped(self, response_id: str) -> None:
        self.emit({"type": "output_audio_buffer.stopped", "response_id": response_id})

    # ------------------------------------------------------------- items

    def _item_from_client(self, wire: dict[str, Any]) -> Item:
        checked = check_item(wire, self._input_format)
        return Item(wire=checked.wire, audio=checked.audio, heard_text=checked.transcript)

    # ------------------------------------------------------------- timers

    def _arm_idle_timer(self, runner: ResponseRunner) -> None:
        td = self.session["audio"]["input"]["turn_detection"]
        if not td or td.get("type") != "server_vad" or not td.get("idle_timeout_ms"):
            return
        # The timeout counts from the end of playback; over WebSocket the
        # server estimates it as the reply's duration from its first audio.
        audio_ms = sum(i.audio_ms for i in runner.output)
        started = runner.times.first_audio_sent or time.perf_counter()
        remaining = max(0.0, started + audio_ms / 1000 - time.perf_counter())
        self._cancel_idle_timer()
        loop = asyncio.get_running_loop()
        self._idle_timer = loop.call_later(remaining + td["idle_timeout_ms"] / 1000, self._idle_timeout)

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _idle_timeout(self) -> None:
        self._idle_timer = None
        if self.closed or self.active is not None or (self._turns and self._turns.speaking):
            return
        item_id = ids.item_id()
        start, end = self.buffer.start, self.buffer.end
        self.emit(
            {
                "type": "input_audio_buffer.timeout_triggered",
                "audio_start_ms": samples_to_ms(start),
                "audio_end_ms": samples_to_ms(end),
                "item_id": item_id,
            }
        )
        item = self._commit(self.buffer.take_all(), item_id)
        self._start_response(self._response_params({}), user_item=item, extra_instructions=IDLE_PROMPT)

    def _expire(self) -> None:
        self.emit_error(
            ProtocolError(
                "session_expired",
                f"Your session hit the maximum duration of {self.config.max_session_seconds} seconds.",
            )
        )
        if self.on_close:
            self.on_close(close_codes.GOING_AWAY, "session expired")

    # ------------------------------------------------------------- metrics

    def _emit_metrics(self, runner: ResponseRunner) -> None:
        """Stage timings of a turn, for clients that opted in (``parley.metrics``)."""
        event = self._metrics.event(runner)
        if any(s.extensions for s in self.sinks):
            self.emit(event)

    # ------------------------------------------------------------- tasks

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # A speculative task that nobody awaits must not log "exception never retrieved".
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task


def _peek_event_id(raw: str | bytes | dict[str, Any]) -> str | None:
    """The client's event_id of a rejected event, when it can be read at all."""
    try:
        event = raw if isinstance(raw, dict) else json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    value = event.get("event_id") if isinstance(event, dict) else None
    return value if isinstance(value, str) else None


def wire_view(item: Item) -> dict[str, Any]:
    return Conversation.wire_view(item)


def _whisper_prompt(config: dict[str, Any]) -> str | None:
    """The transcription ``prompt`` with the ``keywords`` after it: Whisper's initial prompt
    is how it is biased toward words (the decoder continues in the prompt's vocabulary)."""
    parts = [(config.get("prompt") or "").strip().rstrip("."), ", ".join(config.get("keywords") or ())]
    prompt = ". ".join(p for p in parts if p.strip())
    return prompt or None


def _tool_choice(choice: Any) -> ToolChoice:
    if isinstance(choice, dict):
        # An MCP choice without a tool name means "some tool" (of that server).
        return ToolChoice("function", choice["name"]) if choice.get("name") else ToolChoice("required")
    return ToolChoice(choice)
