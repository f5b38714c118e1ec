"""Conversation items → chat messages for the LLM.

The LLM sees what the user heard: an assistant item that was truncated
contributes only its remaining transcript. User audio contributes its
transcript (or what the engine heard, when transcription events are off).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from parley.engine.conversation import Item
from parley.engine.models.base import ChatMessage, ToolCall

# Rough budget so long sessions fit the model's context; the oldest turns go first.
DEFAULT_HISTORY_CHARS = 4000


def _user_text(item: Item) -> str:
    parts: list[str] = []
    for part in item.wire.get("content") or []:
        kind = part.get("type")
        if kind == "input_text":
            parts.append(part.get("text") or "")
        elif kind == "input_audio":
            text = part.get("transcript") or item.heard_text
            if text:
                parts.append(text)
        elif kind == "input_image":
            parts.append("[image]")
    return " ".join(p.strip() for p in parts if p and p.strip())


def _assistant_text(item: Item) -> str:
    parts = []
    for part in item.wire.get("content") or []:
        if part.get("type") == "output_text":
            parts.append(part.get("text") or "")
        elif part.get("type") == "output_audio":
            parts.append(part.get("transcript") or "")
    return " ".join(p.strip() for p in parts if p and p.strip())


def item_messages(items: Iterable[Item]) -> list[ChatMessage]:
    messages: list[ChatMessage] = []
    for item in items:
        wire: dict[str, Any] = item.wire
        kind = wire.get("type")
        if kind == "message":
            role = wire.get("role")
            if role == "user":
                text = _user_text(item)
                if text:
                    messages.append(ChatMessage("user", text))
            elif role == "assistant":
                text = _assistant_text(item)
                if text:
                    messages.append(ChatMessage("assistant", text))
            elif role == "system":
                text = " ".join((p.get("text") or "") for p in wire.get("content") or [])
                if text.strip():
                    messages.append(ChatMessage("system", text.strip()))
        elif kind == "function_call":
            call = ToolCall(wire.get("call_id") or "", wire.get("name") or "", wire.get("arguments") or "")
            if messages and messages[-1].role == "assistant" and messages[-1].tool_calls:
                messages[-1].tool_calls.append(call)
            else:
                messages.append(ChatMessage("assistant", "", tool_calls=[call]))
        elif kind == "function_call_output":
            messages.append(ChatMessage("tool", wire.get("output") or "", tool_call_id=wire.get("call_id")))
    return messages


def build_messages(
    instructions: str, items: Iterable[Item], history_chars: int = DEFAULT_HISTORY_CHARS
) -> list[ChatMessage]:
    history = item_messages(items)
    # Keep the newest messages within the budget, never splitting a tool call from its output.
    kept: list[ChatMessage] = []
    used = 0
    for message in reversed(history):
        size = len(message.content) + sum(len(c.arguments) + len(c.name) for c in message.tool_calls)
        if kept and used + size > history_chars and message.role != "tool" and kept[-1].role != "tool":
            break
        kept.append(message)
        used += size
    kept.reverse()
    system = [ChatMessage("system", instructions.strip())] if instructions.strip() else []
    return system + kept
