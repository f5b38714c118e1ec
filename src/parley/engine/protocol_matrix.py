"""The protocol matrix: every GA event and session field, and what the engine does with it.

The rows are keyed by what openai-python's installed types declare (the
client and server event unions, the realtime session's fields walked
recursively), so a new event or field in the SDK shows up as a missing row
(``tests/protocol/test_protocol_matrix.py`` fails) instead of being dropped
unnoticed. The test also holds the rows to the code: a client event is
"handled" exactly when the session has a handler for it, and a server event is
"emitted" exactly when its type literal occurs in the engine or host sources.

``python -m parley.engine.protocol_matrix --write README.md`` regenerates the
README's copy between the ``protocol-matrix`` markers (``make matrix``).
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from pathlib import Path
from typing import Any, get_args, get_origin

import pydantic

# Statuses, one word each so the table can be scanned for gaps.
YES = "yes"  # implemented as the GA server does
PARTIAL = "partial"  # implemented with a stated limit
ACCEPTED = "accepted"  # validated and echoed in session.updated, no effect on the local models
DROPPED = "dropped"  # accepted without error but neither echoed nor used
REFUSED = "refused"  # answered with an `error` event
NO = "no"  # never emitted / not handled

CLIENT_EVENTS: dict[str, tuple[str, str]] = {
    "session.update": (
        YES,
        'partial merge (`""`/`[]`/`null` clear), value checks, full `session.updated`; '
        '`type: "transcription"` sessions',
    ),
    "input_audio_buffer.append": (
        YES,
        "`audio/pcm` 24 kHz, `audio/pcmu`, `audio/pcma`; refused over WebRTC (the mic arrives over RTP)",
    ),
    "input_audio_buffer.commit": (YES, "≥ 100 ms or `input_audio_buffer_commit_empty`; `committed`"),
    "input_audio_buffer.clear": (YES, "`input_audio_buffer.cleared`"),
    "conversation.item.create": (
        PARTIAL,
        "messages (user/system/assistant, user audio is transcribed), `function_call`, "
        '`function_call_output`, `mcp_approval_response`, `previous_item_id` incl. `"root"`; '
        "other MCP items refused (the engine makes them)",
    ),
    "conversation.item.retrieve": (YES, "`conversation.item.retrieved` (with audio, ≤ 15 s)"),
    "conversation.item.truncate": (YES, "audio cut, transcript trimmed to the words heard"),
    "conversation.item.delete": (YES, "`conversation.item.deleted`"),
    "response.create": (
        YES,
        "per-response `instructions`, `tools`, `tool_choice`, `output_modalities`, `max_output_tokens`, "
        '`audio.output`, `conversation: "none"`, `input`, `metadata`',
    ),
    "response.cancel": (YES, "`response.done` with `cancelled`; `response_cancel_not_active` when idle"),
    "output_audio_buffer.clear": (YES, "WebRTC: flushes queued audio, `cleared`, truncates the item"),
}

SERVER_EVENTS: dict[str, tuple[str, str]] = {
    "session.created": (YES, "first event of every session and sideband"),
    "session.updated": (YES, "after every `session.update`, the full effective session"),
    "conversation.created": (NO, "beta-era event; GA clients do not need it"),
    "conversation.item.added": (YES, "every item, with `previous_item_id`"),
    "conversation.item.created": (NO, "beta-era twin of `conversation.item.added`"),
    "conversation.item.done": (YES, "every item, once final"),
    "conversation.item.retrieved": (YES, "answer to `retrieve`"),
    "conversation.item.truncated": (YES, "client truncate, and WebRTC barge-in (server side)"),
    "conversation.item.deleted": (YES, "answer to `delete`"),
    "conversation.item.input_audio_transcription.delta": (YES, "Whisper's transcript"),
    "conversation.item.input_audio_transcription.completed": (YES, "with `usage` (duration)"),
    "conversation.item.input_audio_transcription.failed": (YES, "a Whisper failure"),
    "conversation.item.input_audio_transcription.segment": (NO, "diarization models only"),
    "input_audio_buffer.committed": (YES, "manual and VAD commits"),
    "input_audio_buffer.cleared": (YES, "answer to `clear`"),
    "input_audio_buffer.speech_started": (YES, "Silero VAD; `item_id` of the coming user item"),
    "input_audio_buffer.speech_stopped": (YES, "Silero VAD"),
    "input_audio_buffer.timeout_triggered": (YES, "`server_vad.idle_timeout_ms`"),
    "input_audio_buffer.dtmf_event_received": (NO, "SIP only; the engine has no SIP"),
    "output_audio_buffer.started": (YES, "WebRTC playout began"),
    "output_audio_buffer.stopped": (YES, "WebRTC playout ended"),
    "output_audio_buffer.cleared": (YES, "WebRTC flush"),
    "response.created": (YES, ""),
    "response.done": (YES, "status, status_details, usage"),
    "response.output_item.added": (YES, ""),
    "response.output_item.done": (YES, ""),
    "response.content_part.added": (YES, ""),
    "response.content_part.done": (YES, ""),
    "response.output_text.delta": (YES, '`output_modalities: ["text"]`'),
    "response.output_text.done": (YES, ""),
    "response.output_audio.delta": (YES, "WebSocket; over WebRTC the audio goes over RTP"),
    "response.output_audio.done": (YES, ""),
    "response.output_audio_transcript.delta": (YES, ""),
    "response.output_audio_transcript.done": (YES, ""),
    "response.function_call_arguments.delta": (YES, "grammar-constrained on the local model"),
    "response.function_call_arguments.done": (YES, ""),
    "response.mcp_call_arguments.delta": (YES, "streamed as the model writes them (grammar-constrained)"),
    "response.mcp_call_arguments.done": (YES, ""),
    "response.mcp_call.in_progress": (YES, "the engine calls the server (`mcp` SDK)"),
    "response.mcp_call.completed": (YES, "then the model answers from the result, in the same response"),
    "response.mcp_call.failed": (YES, "server error, timeout (30 s), result over 64 KiB: the call fails"),
    "mcp_list_tools.in_progress": (YES, "when an MCP server is configured"),
    "mcp_list_tools.completed": (YES, "the `mcp_list_tools` item carries the tools"),
    "mcp_list_tools.failed": (YES, "unreachable or failing server; the session goes on"),
    "rate_limits.updated": (YES, "after each response (local: no real limits)"),
    "error": (YES, "bad input, echoing the client `event_id`; the session goes on"),
}

_MCP_TOOL = (YES, "")
_TURN = "audio.input.turn_detection"
SESSION_FIELDS: dict[str, tuple[str, str]] = {
    "type": (YES, "`realtime` and `transcription`"),
    "model": (ACCEPTED, "echoed; the local models are chosen by the engine's configuration"),
    "instructions": (YES, "the LLM's system prompt"),
    "output_modalities": (YES, '`["audio"]` or `["text"]`'),
    "max_output_tokens": (YES, '1–4096 or `"inf"`'),
    "tools": (YES, "function and MCP tools; also per response"),
    "tools.type": (YES, "`function`, `mcp`"),
    "tools.name": (YES, ""),
    "tools.description": (YES, "shown to the LLM"),
    "tools.parameters": (YES, "JSON Schema → llama.cpp grammar"),
    "tools.server_label": _MCP_TOOL,
    "tools.server_url": (YES, "streamable HTTP, else SSE"),
    "tools.allowed_tools": _MCP_TOOL,
    "tools.allowed_tools.read_only": _MCP_TOOL,
    "tools.allowed_tools.tool_names": _MCP_TOOL,
    "tools.authorization": (YES, "sent as a bearer token"),
    "tools.connector_id": (REFUSED, "OpenAI-hosted connectors: give a `server_url`"),
    "tools.headers": (YES, "sent with every MCP request"),
    "tools.require_approval": (YES, "`mcp_approval_request` items; default `always`"),
    "tools.require_approval.always": _MCP_TOOL,
    "tools.require_approval.always.read_only": _MCP_TOOL,
    "tools.require_approval.always.tool_names": _MCP_TOOL,
    "tools.require_approval.never": _MCP_TOOL,
    "tools.require_approval.never.read_only": _MCP_TOOL,
    "tools.require_approval.never.tool_names": _MCP_TOOL,
    "tools.server_description": _MCP_TOOL,
    "tools.allowed_callers": (DROPPED, ""),
    "tools.defer_loading": (DROPPED, ""),
    "tools.tunnel_id": (DROPPED, ""),
    "tool_choice": (YES, "`auto`/`none`/`required`/a function/an MCP server (and tool)"),
    "tool_choice.type": (YES, "`function`, `mcp`"),
    "tool_choice.name": (YES, ""),
    "tool_choice.server_label": _MCP_TOOL,
    "parallel_tool_calls": (
        PARTIAL,
        "echoed; also per response; passed to an OpenAI-compatible LLM; the local model makes one "
        "call per response",
    ),
    "reasoning": (PARTIAL, "echoed; also per response; the local models do not reason"),
    "reasoning.effort": (PARTIAL, "passed to an OpenAI-compatible LLM as `reasoning_effort`"),
    "truncation": (
        YES,
        "checked, echoed; when the history outgrows the context (the backend's `n_ctx`, else 4096, "
        "minus the reply's room): `auto` drops the oldest, `disabled` fails the response "
        "(`context_length_exceeded`); tokens are estimated at ~4 characters",
    ),
    "truncation.type": (YES, "`retention_ratio`"),
    "truncation.retention_ratio": (YES, "cuts down to this fraction of the budget"),
    "truncation.token_limits": (YES, ""),
    "truncation.token_limits.post_instructions": (YES, "caps the history's budget"),
    "prompt": (ACCEPTED, "echoed; stored prompts live on OpenAI's servers"),
    "prompt.id": (ACCEPTED, ""),
    "prompt.variables": (ACCEPTED, ""),
    "prompt.version": (ACCEPTED, ""),
    "include": (ACCEPTED, "echoed; no logprobs from the local Whisper"),
    "tracing": (ACCEPTED, "echoed; no tracing backend"),
    "tracing.group_id": (ACCEPTED, ""),
    "tracing.metadata": (ACCEPTED, ""),
    "tracing.workflow_name": (ACCEPTED, ""),
    "audio": (YES, ""),
    "audio.input": (YES, ""),
    "audio.input.format": (YES, "`audio/pcm` 24 kHz, `audio/pcmu`, `audio/pcma`"),
    "audio.input.format.type": (YES, ""),
    "audio.input.format.rate": (YES, "24000 only"),
    "audio.input.noise_reduction": (
        YES,
        "the WebRTC APM noise suppressor (LiveKit binding) on the input before VAD and Whisper",
    ),
    "audio.input.noise_reduction.type": (PARTIAL, "`near_field`/`far_field`: the same suppressor"),
    "audio.input.noise_reduction.strength": (ACCEPTED, "0–1, echoed; the binding has no level"),
    "audio.input.transcription": (YES, "non-null turns transcription events on"),
    "audio.input.transcription.model": (ACCEPTED, "echoed; always the local Whisper"),
    "audio.input.transcription.language": (YES, "passed to Whisper"),
    "audio.input.transcription.prompt": (YES, "Whisper's initial prompt"),
    "audio.input.transcription.languages": (
        YES,
        "several: Whisper detects among them only, and `completed.languages` reports the one used",
    ),
    "audio.input.transcription.keywords": (YES, "appended to Whisper's initial prompt (biasing)"),
    "audio.input.transcription.delay": (ACCEPTED, "echoed; Whisper transcribes whole turns"),
    _TURN: (YES, "`server_vad`, `semantic_vad` or `null` (manual turns)"),
    f"{_TURN}.type": (YES, ""),
    f"{_TURN}.threshold": (YES, "Silero VAD threshold"),
    f"{_TURN}.prefix_padding_ms": (YES, ""),
    f"{_TURN}.silence_duration_ms": (YES, ""),
    f"{_TURN}.idle_timeout_ms": (YES, "`input_audio_buffer.timeout_triggered`"),
    f"{_TURN}.create_response": (YES, ""),
    f"{_TURN}.interrupt_response": (YES, ""),
    f"{_TURN}.eagerness": (YES, "250/500/900 ms after a finished thought, up to 2/4/8 s otherwise"),
    "audio.output": (YES, ""),
    "audio.output.format": (YES, "`audio/pcm` 24 kHz, `audio/pcmu`, `audio/pcma`"),
    "audio.output.format.type": (YES, ""),
    "audio.output.format.rate": (YES, "24000 only"),
    "audio.output.speed": (YES, "Piper's length scale"),
    "audio.output.voice": (PARTIAL, "any name is accepted and echoed; one local Piper voice speaks"),
    "audio.output.voice.id": (PARTIAL, "taken as the voice name"),
}


# --- what openai-python declares ----------------------------------------------


def _models_in(annotation: Any) -> list[type[pydantic.BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, unions, lists, Annotated)."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list, typing.List):  # noqa: UP006
        return [m for arg in get_args(annotation) for m in _models_in(arg)]
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    return []


def _field_paths(cls: type[pydantic.BaseModel], prefix: str = "") -> list[str]:
    paths: list[str] = []
    for name, field in cls.model_fields.items():
        path = prefix + name
        paths.append(path)
        for model in _models_in(field.annotation):
            paths.extend(_field_paths(model, path + "."))
    return paths


def declared_session_fields() -> list[str]:
    """Every field path of the realtime and transcription session types, in declaration order."""
    from openai.types.realtime import (
        RealtimeSessionCreateRequest,
        RealtimeTranscriptionSessionCreateRequest,
    )

    seen: dict[str, None] = {}
    for cls in (RealtimeSessionCreateRequest, RealtimeTranscriptionSessionCreateRequest):
        for path in _field_paths(cls):
            seen.setdefault(path, None)
    return list(seen)


def declared_client_events() -> list[str]:
    from parley.protocol.validation import client_event_classes

    return list(client_event_classes())


def declared_server_events() -> list[str]:
    from parley.protocol.validation import server_event_classes

    return list(server_event_classes())


# --- rendering ------------------------------------------------------------------

START = "<!-- protocol-matrix:start (generated by `make matrix`; do not edit by hand) -->"
END = "<!-- protocol-matrix:end -->"


def _table(title: str, rows: dict[str, tuple[str, str]], keys: list[str]) -> list[str]:
    lines = [f"| {title} | status | engine behaviour |", "|---|---|---|"]
    for key in keys:
        status, note = rows.get(key, ("**missing**", "not in the matrix"))
        lines.append(f"| `{key}` | {status} | {note} |")
    return lines


def render() -> str:
    """The matrix as Markdown, in openai-python's own order."""
    import openai

    out = [
        START,
        f"Generated from `src/parley/engine/protocol_matrix.py` against openai-python {openai.__version__}'s "
        "types. Statuses: **yes** as the GA server; **partial** with the stated limit; **accepted** "
        "validated and echoed in `session.updated` without effect on the local models; **dropped** "
        "accepted without error but not echoed; **refused** an `error` event; **no** never emitted.",
        "",
        *_table("client event", CLIENT_EVENTS, declared_client_events()),
        "",
        *_table("server event", SERVER_EVENTS, declared_server_events()),
        "",
        *_table("session field", SESSION_FIELDS, declared_session_fields()),
        END,
    ]
    return "\n".join(out) + "\n"


def splice(readme: str, matrix: str) -> str:
    """``readme`` with the text between the markers replaced by ``matrix``."""
    head, start, rest = readme.partition(START)
    if not start:
        raise ValueError("the README has no protocol-matrix start marker")
    _, end, tail = rest.partition(END)
    if not end:
        raise ValueError("the README has no protocol-matrix end marker")
    return head + matrix.rstrip("\n") + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", type=Path, help="replace the matrix in this README in place")
    args = parser.parse_args(argv)
    matrix = render()
    if args.write is None:
        sys.stdout.write(matrix)
        return 0
    args.write.write_text(splice(args.write.read_text(), matrix))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
