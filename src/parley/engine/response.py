"""A response: turns a Generation's outputs into the protocol's response events.

Event order for a spoken reply (GA):
response.created → output_item.added → conversation.item.added →
content_part.added → (output_audio_transcript.delta, output_audio.delta…)… →
output_audio.done → output_audio_transcript.done → content_part.done →
output_item.done → conversation.item.done → response.done → rate_limits.updated

Cancellation is synchronous: :meth:`ResponseRunner.cancel` closes whatever is
open, emits ``response.done`` and stops the generation before it returns, so
no delta of a cancelled response can follow its ``response.done``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from parley.engine.conversation import Conversation, Item
from parley.engine.generation import Generation, GenerationFailed, SpokenClause
from parley.engine.mcp_tools import McpServer
from parley.engine.models.base import Finish, TextDelta, ToolCallDelta
from parley.engine.prompt import ContextOverflow
from parley.media.playout import PlayoutPosition
from parley.protocol import ids
from parley.protocol.audio_formats import CANONICAL_RATE, AudioFormat, OutputEncoder

# Audio deltas of at most 200 ms keep frames small and let clients start early.
DELTA_SAMPLES = CANONICAL_RATE // 5


@dataclass
class ResponseParams:
    instructions: str
    tools: list[dict[str, Any]]
    tool_choice: Any
    output_modalities: list[str]
    max_output_tokens: int | str
    voice: str
    speed: float
    output_format: AudioFormat
    conversation: Literal["auto", "none"] = "auto"
    input_items: list[Item] | None = None  # replaces the conversation as context
    metadata: dict[str, str] | None = None
    parallel_tool_calls: bool | None = None  # None = the backend's default
    reasoning_effort: str | None = None

    @property
    def audio(self) -> bool:
        return self.output_modalities == ["audio"]


class MediaOutput(Protocol):
    """Where spoken audio goes when a transport carries it as media (WebRTC), not events.

    The transport paces the audio out in real time and reports playout to the
    session (``playout_started``/``playout_stopped``); ``clear`` drops what has
    not been sent yet and says how much of the current item was.
    """

    def write(self, response_id: str, item_id: str, pcm: np.ndarray) -> None: ...

    def end_of_response(self, response_id: str) -> None: ...

    def clear(self) -> PlayoutPosition | None: ...


class ResponseHost(Protocol):
    """What a response needs from its session."""

    conversation: Conversation
    media: MediaOutput | None

    def emit(self, event: dict[str, Any]) -> None: ...

    def response_finished(self, runner: ResponseRunner) -> None: ...


@dataclass
class _OpenMessage:
    item: Item
    output_index: int
    text: list[str] = field(default_factory=list)
    audio_samples: int = 0


@dataclass
class _OpenCall:
    item: Item
    output_index: int
    arguments: list[str] = field(default_factory=list)
    server: McpServer | None = None  # set for mcp_call and mcp_approval_request items

    @property
    def kind(self) -> str:
        return str(self.item.wire["type"])


@dataclass
class McpHooks:
    """What a response needs to run MCP calls (given by the session when MCP tools are configured)."""

    # An MCP tool by the name the model called, if it is one: (server, tool).
    find: Callable[[str], tuple[McpServer, dict[str, Any]] | None]
    # A new generation after MCP results, from the conversation as it is now.
    continue_with: Callable[[ResponseRunner], Awaitable[Generation]]
    # Approved requests not yet run, to run first: (request item wire, server).
    approved: list[tuple[dict[str, Any], McpServer]] = field(default_factory=list)


@dataclass
class ResponseTimes:
    created: float = field(default_factory=time.perf_counter)
    first_audio_sent: float | None = None
    done: float | None = None


class ResponseRunner:
    def __init__(self, host: ResponseHost, params: ResponseParams) -> None:
        self.host = host
        self.params = params
        self.id = ids.response_id()
        self.status: str = "in_progress"
        self.status_details: dict[str, Any] | None = None
        self.output: list[Item] = []
        self.usage = {"input_tokens": 0, "output_tokens": 0}
        self.times = ResponseTimes()
        self.generation: Generation | None = None
        self._message: _OpenMessage | None = None
        self._calls: dict[int, _OpenCall] = {}
        self._task: asyncio.Task[None] | None = None
        self.mcp: McpHooks | None = None
        self._mcp_pending: list[_OpenCall] = []
        self._encoder = OutputEncoder(params.output_format)  # one per message: G.711 resampling has a tail

    # --- lifecycle -------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.status != "in_progress"

    @property
    def in_conversation(self) -> bool:
        return self.params.conversation == "auto"

    def start(self, prepare: Callable[[ResponseRunner], Awaitable[Generation]]) -> None:
        """Emit ``response.created`` now and run the reply in a task."""
        self.host.emit({"type": "response.created", "response": self._wire()})
        self._task = asyncio.create_task(self._run(prepare), name=f"response {self.id}")

    def cancel(self, reason: Literal["turn_detected", "client_cancelled"]) -> None:
        if self.finished:
            return
        self._close_open("incomplete")
        self._finish("cancelled", {"type": "cancelled", "reason": reason})
        if self.generation:
            self.generation.cancel()
        if self._task and not self._task.done():
            self._task.cancel()

    async def wait(self) -> None:
        if self._task:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # --- the run ---------------------------------------------------------

    async def _run(self, prepare: Callable[[ResponseRunner], Awaitable[Generation]]) -> None:
        try:
            if self.mcp is not None and self.mcp.approved:
                # Calls the client approved since the last response run first; the model then
                # answers from their results.
                for request, server in self.mcp.approved:
                    await self._run_approved(request, server)
                    if self.finished:
                        return
                self.generation = await self.mcp.continue_with(self)
            else:
                self.generation = await prepare(self)
            while True:
                if self.finished:
                    self.generation.cancel()
                    return
                async for out in self.generation.outputs():
                    if self.finished:
                        return
                    if isinstance(out, TextDelta):
                        self._on_text(out.text)
                    elif isinstance(out, SpokenClause):
                        self._on_clause(out)
                    elif isinstance(out, ToolCallDelta):
                        self._on_tool_delta(out)
                    elif isinstance(out, Finish):
                        self._on_finish(out)
                    elif isinstance(out, GenerationFailed):
                        self._fail(out.error)
                if self.finished or not self._mcp_pending or self.mcp is None:
                    return
                # The model called MCP tools: run them, then let it answer from the results.
                while self._mcp_pending:  # the queue: a cancel meanwhile closes what is left
                    await self._execute_mcp(self._mcp_pending[0])
                    if self.finished:
                        return
                    self._mcp_pending.pop(0)
                self.generation = await self.mcp.continue_with(self)
        except asyncio.CancelledError:
            if not self.finished:  # cancelled from outside without cancel(): still end properly
                self._close_open("incomplete")
                self._finish("cancelled", {"type": "cancelled", "reason": "client_cancelled"})
            raise
        except Exception as exc:
            self._fail(exc)

    def _fail(self, error: BaseException) -> None:
        if self.finished:
            return
        if self.generation:
            self.generation.cancel()
        self._close_open("incomplete")
        message = str(error) or error.__class__.__name__
        if isinstance(error, ContextOverflow):  # the client's setting, not a model fault
            details = {"type": "invalid_request_error", "code": "context_length_exceeded", "message": message}
        else:
            details = {
                "type": "server_error",
                "code": "model_error",
                "message": f"The model failed: {message}",
            }
        self._finish("failed", {"type": "failed", "error": details})

    # --- outputs → events ------------------------------------------------

    def _add_item(self, wire: dict[str, Any]) -> Item:
        item = Item(wire=wire)
        output_index = len(self.output)
        self.output.append(item)
        self.host.emit(
            {
                "type": "response.output_item.added",
                "response_id": self.id,
                "output_index": output_index,
                "item": Conversation.wire_view(item),
            }
        )
        if self.in_conversation:
            previous = self.host.conversation.insert(item)
            self.host.emit(
                {
                    "type": "conversation.item.added",
                    "previous_item_id": previous,
                    "item": Conversation.wire_view(item),
                }
            )
        return item

    def _open_message(self) -> _OpenMessage:
        if self._message is None:
            audio = self.params.audio
            content = (
                {"type": "output_audio", "transcript": ""} if audio else {"type": "output_text", "text": ""}
            )
            item = self._add_item(
                {
                    "id": ids.item_id(),
                    "object": "realtime.item",
                    "type": "message",
                    "status": "in_progress",
                    "role": "assistant",
                    "content": [content],
                }
            )
            self._encoder = OutputEncoder(self.params.output_format)
            self._message = _OpenMessage(item, len(self.output) - 1)
            part = {"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""}
            self.host.emit(
                {
                    "type": "response.content_part.added",
                    "response_id": self.id,
                    "item_id": item.id,
                    "output_index": self._message.output_index,
                    "content_index": 0,
                    "part": part,
                }
            )
        return self._message

    def _refs(self, message: _OpenMessage | _OpenCall) -> dict[str, Any]:
        return {"response_id": self.id, "item_id": message.item.id, "output_index": message.output_index}

    def _on_text(self, text: str) -> None:
        if not text:
            return
        message = self._open_message()
        message.text.append(text)
        self.host.emit(
            {"type": "response.output_text.delta", **self._refs(message), "content_index": 0, "delta": text}
        )

    def _on_clause(self, clause: SpokenClause) -> None:
        message = self._open_message()
        item = message.item
        spoken = ("" if not message.text else " ") + clause.text
        message.text.append(spoken)
        item.add_words(clause.words, offset_ms=message.audio_samples * 1000 / CANONICAL_RATE)
        item.append_audio(clause.audio)
        message.audio_samples += len(clause.audio)
        refs = {**self._refs(message), "content_index": 0}
        self.host.emit({"type": "response.output_audio_transcript.delta", **refs, "delta": spoken})
        if self.times.first_audio_sent is None:
            self.times.first_audio_sent = time.perf_counter()
        if self.host.media is not None:
            self.host.media.write(self.id, item.id, clause.audio)
            return
        for start in range(0, len(clause.audio), DELTA_SAMPLES):
            data = self._encoder(clause.audio[start : start + DELTA_SAMPLES])
            self.host.emit(
                {"type": "response.output_audio.delta", **refs, "delta": base64.b64encode(data).decode()}
            )

    def _on_tool_delta(self, delta: ToolCallDelta) -> None:
        call = self._calls.get(delta.index)
        found = self.mcp.find(delta.name) if call is None and self.mcp and delta.name else None
        if found is not None:
            self._close_message("completed")
            server, tool = found
            kind = "mcp_approval_request" if server.needs_approval(tool) else "mcp_call"
            wire = {
                "id": ids.item_id(),
                "type": kind,
                "server_label": server.label,
                "name": tool["name"],
                "arguments": "",
            }
            item = self._add_item(wire)
            call = self._calls[delta.index] = _OpenCall(item, len(self.output) - 1, server=server)
        if call is not None and call.server is not None:
            if delta.arguments:
                call.arguments.append(delta.arguments)
                if call.kind == "mcp_call":  # an approval request's arguments show when it is done
                    self.host.emit(
                        {
                            "type": "response.mcp_call_arguments.delta",
                            **self._refs(call),
                            "delta": delta.arguments,
                        }
                    )
            return
        if call is None:
            self._close_message("completed")
            wire = {
                "id": ids.item_id(),
                "object": "realtime.item",
                "type": "function_call",
                "status": "in_progress",
                "name": delta.name or "",
                "call_id": delta.call_id or ids.call_id(),
                "arguments": "",
            }
            item = self._add_item(wire)
            call = self._calls[delta.index] = _OpenCall(item, len(self.output) - 1)
        if delta.arguments:
            call.arguments.append(delta.arguments)
            self.host.emit(
                {
                    "type": "response.function_call_arguments.delta",
                    **self._refs(call),
                    "call_id": call.item.wire["call_id"],
                    "delta": delta.arguments,
                }
            )

    def _on_finish(self, finish: Finish) -> None:
        # Summed over the generations of one response (there are several around MCP calls).
        self.usage = {
            "input_tokens": self.usage["input_tokens"] + finish.input_tokens,
            "output_tokens": self.usage["output_tokens"] + finish.output_tokens,
        }
        truncated = finish.reason == "length"
        self._close_open("incomplete" if truncated else "completed")
        if truncated:
            self._finish("incomplete", {"type": "incomplete", "reason": "max_output_tokens"})
        elif not self._mcp_pending:
            self._finish("completed", None)

    # --- MCP calls ---------------------------------------------------------

    async def _execute_mcp(self, call: _OpenCall) -> None:
        from parley.engine.mcp_tools import McpError, call_tool

        wire = call.item.wire
        refs = {"item_id": call.item.id, "output_index": call.output_index}
        self.host.emit({"type": "response.mcp_call.in_progress", **refs})
        assert call.server is not None
        try:
            wire["output"] = await call_tool(call.server, wire["name"], wire["arguments"])
        except McpError as err:
            wire["error"] = err.error
        except Exception as exc:  # a bad server fails the call, never the session
            wire["error"] = {"type": "tool_execution_error", "message": f"{exc.__class__.__name__}: {exc}"}
        if self.finished:
            return
        if "error" in wire:
            self.host.emit({"type": "response.mcp_call.failed", **refs})
        else:
            self.host.emit({"type": "response.mcp_call.completed", **refs})
        self._close_item(call.item, call.output_index, "completed")

    async def _run_approved(self, request: dict[str, Any], server: McpServer) -> None:
        wire = {
            "id": ids.item_id(),
            "type": "mcp_call",
            "server_label": request["server_label"],
            "name": request["name"],
            "arguments": request.get("arguments") or "",
            "approval_request_id": request["id"],
        }
        item = self._add_item(wire)
        call = _OpenCall(item, len(self.output) - 1, [wire["arguments"]], server=server)
        self.host.emit(
            {"type": "response.mcp_call_arguments.done", **self._refs(call), "arguments": wire["arguments"]}
        )
        await self._execute_mcp(call)

    # --- closing ---------------------------------------------------------

    def _close_message(self, status: str) -> None:
        message, self._message = self._message, None
        if message is None:
            return
        item, refs = message.item, {**self._refs(message), "content_index": 0}
        text = "".join(message.text)
        if self.params.audio:
            item.wire["content"][0]["transcript"] = text
            tail = self._encoder(np.zeros(0, dtype=np.int16), last=True) if self.host.media is None else b""
            if tail and status == "completed":
                # The G.711 resampler holds the last ~20 ms back until told the stream ended.
                self.host.emit(
                    {"type": "response.output_audio.delta", **refs, "delta": base64.b64encode(tail).decode()}
                )
            self.host.emit({"type": "response.output_audio.done", **refs})
            self.host.emit({"type": "response.output_audio_transcript.done", **refs, "transcript": text})
            part = {"type": "audio", "transcript": text}
        else:
            item.wire["content"][0]["text"] = text
            self.host.emit({"type": "response.output_text.done", **refs, "text": text})
            part = {"type": "text", "text": text}
        self.host.emit({"type": "response.content_part.done", **refs, "part": part})
        self._close_item(item, message.output_index, status)

    def _close_item(self, item: Item, output_index: int, status: str) -> None:
        if not str(item.wire.get("type", "")).startswith("mcp"):  # MCP items carry no status
            item.wire["status"] = status
        view = Conversation.wire_view(item)
        self.host.emit(
            {
                "type": "response.output_item.done",
                "response_id": self.id,
                "output_index": output_index,
                "item": view,
            }
        )
        if self.in_conversation and item.id in self.host.conversation:
            self.host.conversation.touch()
            self.host.emit({"type": "conversation.item.done", "item": view})

    def _close_open(self, status: str) -> None:
        self._close_message(status)
        for call in self._calls.values():
            arguments = "".join(call.arguments)
            call.item.wire["arguments"] = arguments
            if call.kind == "mcp_call":
                if status == "completed":
                    self.host.emit(
                        {
                            "type": "response.mcp_call_arguments.done",
                            **self._refs(call),
                            "arguments": arguments,
                        }
                    )
                    self._mcp_pending.append(call)  # closed once it has run
                else:
                    call.item.wire["error"] = {
                        "type": "tool_execution_error",
                        "message": "The response ended.",
                    }
                    self._close_item(call.item, call.output_index, status)
                continue
            if call.kind == "mcp_approval_request":
                self._close_item(call.item, call.output_index, status)
                continue
            if status == "completed":
                self.host.emit(
                    {
                        "type": "response.function_call_arguments.done",
                        **self._refs(call),
                        "call_id": call.item.wire["call_id"],
                        "name": call.item.wire["name"],
                        "arguments": arguments,
                    }
                )
            self._close_item(call.item, call.output_index, status)
        self._calls.clear()
        if status != "completed":
            for call in self._mcp_pending:  # queued or running MCP calls end with the response
                call.item.wire.setdefault(
                    "error",
                    {"type": "tool_execution_error", "message": "The response ended before the call."},
                )
                self._close_item(call.item, call.output_index, status)
            self._mcp_pending = []

    def _finish(self, status: str, details: dict[str, Any] | None) -> None:
        self.status = status
        self.status_details = details
        self.times.done = time.perf_counter()
        self.host.emit({"type": "response.done", "response": self._wire()})
        self.host.emit(
            {
                "type": "rate_limits.updated",
                "rate_limits": [
                    {"name": "requests", "limit": 10_000, "remaining": 9_999, "reset_seconds": 0.006},
                    {
                        "name": "tokens",
                        "limit": 1_000_000,
                        "remaining": 1_000_000 - self.usage["output_tokens"],
                        "reset_seconds": 0.0,
                    },
                ],
            }
        )
        if self.host.media is not None and self.params.audio:
            self.host.media.end_of_response(self.id)
        self.host.response_finished(self)

    def _wire(self) -> dict[str, Any]:
        tokens_in, tokens_out = self.usage["input_tokens"], self.usage["output_tokens"]
        audio = self.params.audio
        return {
            "object": "realtime.response",
            "id": self.id,
            "status": self.status,
            "status_details": self.status_details,
            "output": [Conversation.wire_view(i) for i in self.output],
            "conversation_id": self.host.conversation.id if self.in_conversation else None,
            "output_modalities": list(self.params.output_modalities),
            "max_output_tokens": self.params.max_output_tokens,
            "audio": {"output": {"format": self.params.output_format.to_json(), "voice": self.params.voice}},
            "usage": {
                "total_tokens": tokens_in + tokens_out,
                "input_tokens": tokens_in,
                "output_tokens": tokens_out,
                "input_token_details": {
                    "text_tokens": tokens_in,
                    "audio_tokens": 0,
                    "image_tokens": 0,
                    "cached_tokens": 0,
                    "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
                },
                "output_token_details": {
                    "text_tokens": tokens_out if not audio else 0,
                    "audio_tokens": tokens_out if audio else 0,
                },
            }
            if self.finished
            else None,
            "metadata": self.params.metadata,
        }
