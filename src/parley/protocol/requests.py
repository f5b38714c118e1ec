"""Checks of what clients ask for: items they create and the parameters of ``response.create``.

Like the ``check_*`` functions of :mod:`parley.protocol.session_config`, these
turn a client payload into checked values or raise the :class:`ProtocolError`
OpenAI would. What the session alone knows (the items a ``response.input``
references) is resolved through a callback.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

import numpy as np

from parley.protocol import ids
from parley.protocol.audio_formats import AudioFormat, InputDecoder
from parley.protocol.errors import ProtocolError, invalid_value
from parley.protocol.session_config import (
    check_format,
    check_max_output_tokens,
    check_output_modalities,
    check_parallel_tool_calls,
    check_reasoning,
    check_tool_choice,
    check_tools,
)

# Content part types each role may send in a message item.
ALLOWED_CONTENT = {
    "user": ("input_text", "input_audio", "input_image"),
    "system": ("input_text",),
    "assistant": ("output_text", "output_audio"),
}


@dataclass
class ClientItem:
    """A client-created item: its wire form, its audio decoded to canonical PCM, a transcript it came with."""

    wire: dict[str, Any]
    audio: np.ndarray | None = None
    transcript: str | None = None


def check_item(wire: dict[str, Any], input_format: AudioFormat) -> ClientItem:
    """Complete and check an item from ``conversation.item.create`` (or ``response.input``)."""
    kind = wire["type"]
    if kind == "mcp_approval_response":
        return _approval_response(wire)
    if kind.startswith("mcp"):
        raise ProtocolError(
            "unsupported_item",
            f"Items of type '{kind}' are not supported by the local engine.",
            "item.type",
        )
    item = {k: v for k, v in wire.items()}
    item["id"] = wire.get("id") or ids.item_id()
    item["object"] = "realtime.item"
    item["status"] = "completed"
    audio: np.ndarray | None = None
    heard: str | None = None
    if kind == "message":
        content = [dict(part) for part in wire.get("content") or []]
        allowed = ALLOWED_CONTENT[wire["role"]]
        for i, part in enumerate(content):
            if part.get("type") not in allowed:
                raise invalid_value(
                    f"Invalid 'item.content[{i}].type' for a {wire['role']} message: "
                    f"{part.get('type')!r}. Supported values are: {', '.join(allowed)}.",
                    f"item.content[{i}].type",
                )
            if part["type"] == "input_audio" and part.get("audio"):
                if audio is not None:
                    raise invalid_value("Only one audio part per message is supported.", f"item.content[{i}]")
                try:
                    data = base64.b64decode(part.pop("audio"), validate=True)
                except (binascii.Error, ValueError):
                    raise invalid_value(
                        "Invalid audio: not valid base64.", f"item.content[{i}].audio"
                    ) from None
                audio = InputDecoder(input_format)(data)
                part.setdefault("transcript", None)
                if part.get("transcript"):
                    heard = part["transcript"]
            if part["type"] == "output_audio" and part.get("audio"):
                raise invalid_value("Clients cannot create assistant audio.", f"item.content[{i}].audio")
        item["content"] = content
    elif kind == "function_call":
        item.setdefault("call_id", ids.call_id())
    return ClientItem(wire=item, audio=audio, transcript=heard)


def _approval_response(wire: dict[str, Any]) -> ClientItem:
    """The client's answer to an ``mcp_approval_request`` (the engine then runs, or skips, the call)."""
    request_id = wire.get("approval_request_id")
    if not isinstance(request_id, str) or not request_id:
        raise ProtocolError(
            "missing_required_parameter",
            "Missing required parameter: 'item.approval_request_id'.",
            "item.approval_request_id",
        )
    if not isinstance(wire.get("approve"), bool):
        raise invalid_value("Invalid 'item.approve': expected a boolean.", "item.approve")
    item: dict[str, Any] = {
        "id": wire.get("id") or ids.item_id(),
        "type": "mcp_approval_response",
        "approval_request_id": request_id,
        "approve": wire["approve"],
    }
    if wire.get("reason") is not None:
        item["reason"] = str(wire["reason"])
    return ClientItem(wire=item, audio=None, transcript=None)


class ResponseRequest(TypedDict):
    """The parameters of one response: ``response.create`` overrides on top of the session."""

    instructions: str
    tools: list[dict[str, Any]]
    tool_choice: Any
    output_modalities: list[str]
    max_output_tokens: int | str
    voice: str
    speed: float
    output_format: AudioFormat
    conversation: Literal["auto", "none"]
    input_items: list[Any] | None
    metadata: dict[str, str] | None
    parallel_tool_calls: bool | None
    reasoning_effort: str | None


def check_response(
    overrides: dict[str, Any], session: dict[str, Any], input_item: Callable[[int, Any], Any]
) -> ResponseRequest:
    """Resolve a ``response.create``'s ``response`` object against the effective ``session``.

    ``input_item(index, entry)`` turns each ``response.input`` entry (an item or
    an ``item_reference``) into the caller's item, in order.
    """
    s = session
    conversation = overrides.get("conversation", "auto")
    if conversation not in ("auto", "none"):
        raise invalid_value(
            f"Invalid 'response.conversation': {conversation!r}. Supported values are: auto, none.",
            "response.conversation",
        )
    metadata = overrides.get("metadata")
    if metadata is not None:
        if (
            not isinstance(metadata, dict)
            or len(metadata) > 16
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
        ):
            raise invalid_value(
                "Invalid 'response.metadata': up to 16 string key/value pairs.", "response.metadata"
            )
    reasoning = (
        check_reasoning(overrides["reasoning"], "response.reasoning")
        if "reasoning" in overrides
        else s.get("reasoning")
    )
    audio_out = (overrides.get("audio") or {}).get("output") or {}
    voice = audio_out.get("voice") or s["audio"]["output"]["voice"]
    if isinstance(voice, dict):
        voice = voice.get("id") or s["audio"]["output"]["voice"]
    fmt = (
        check_format(audio_out["format"], "response.audio.output.format")
        if "format" in audio_out
        else s["audio"]["output"]["format"]
    )
    request = ResponseRequest(
        instructions=overrides["instructions"]
        if isinstance(overrides.get("instructions"), str)
        else s["instructions"],
        tools=check_tools(overrides["tools"], "response.tools") if "tools" in overrides else s["tools"],
        tool_choice=check_tool_choice(overrides["tool_choice"], "response.tool_choice")
        if "tool_choice" in overrides
        else s["tool_choice"],
        output_modalities=check_output_modalities(
            overrides["output_modalities"], "response.output_modalities"
        )
        if "output_modalities" in overrides
        else s["output_modalities"],
        max_output_tokens=check_max_output_tokens(
            overrides["max_output_tokens"], "response.max_output_tokens"
        )
        if "max_output_tokens" in overrides
        else s["max_output_tokens"],
        voice=voice,
        speed=float(s["audio"]["output"]["speed"]),
        output_format=AudioFormat.from_json(fmt),
        conversation=conversation,
        input_items=_input_items(overrides["input"], input_item) if "input" in overrides else None,
        metadata=metadata,
        parallel_tool_calls=check_parallel_tool_calls(
            overrides["parallel_tool_calls"], "response.parallel_tool_calls"
        )
        if "parallel_tool_calls" in overrides
        else s.get("parallel_tool_calls"),
        reasoning_effort=(reasoning or {}).get("effort"),
    )
    choice = request["tool_choice"]
    if isinstance(choice, dict) and choice["type"] == "mcp":
        if choice["server_label"] not in {t.get("server_label") for t in request["tools"]}:
            raise invalid_value(
                f"Tool choice server '{choice['server_label']}' is not one of the available MCP servers.",
                "response.tool_choice",
            )
    elif isinstance(choice, dict) and choice["name"] not in {t.get("name") for t in request["tools"]}:
        raise invalid_value(
            f"Tool choice '{choice['name']}' is not one of the available tools.", "response.tool_choice"
        )
    return request


def _input_items(entries: Any, input_item: Callable[[int, Any], Any]) -> list[Any]:
    if not isinstance(entries, list):
        raise invalid_value("Invalid 'response.input': expected an array of items.", "response.input")
    return [input_item(i, entry) for i, entry in enumerate(entries)]
