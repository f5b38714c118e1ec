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

# Context size assumed for backends that do not report theirs (``n_ctx``).
DEFAULT_CONTEXT_TOKENS = 4096
# Per-message overhead of chat templates (role markers, separators), in tokens.
MESSAGE_OVERHEAD_TOKENS = 4


class ContextOverflow(Exception):
    """The history does not fit the context and ``truncation`` is ``"disabled"``."""


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


def _tool_call(messages: list[ChatMessage], call: ToolCall) -> None:
    if messages and messages[-1].role == "assistant" and messages[-1].tool_calls:
        messages[-1].tool_calls.append(call)
    else:
        messages.append(ChatMessage("assistant", "", tool_calls=[call]))


def item_messages(items: Iterable[Item]) -> list[ChatMessage]:
    items = list(items)
    messages: list[ChatMessage] = []
    requests = {i.id: i.wire for i in items if i.wire.get("type") == "mcp_approval_request"}
    for item in items:
        wire: dict[str, Any] = item.wire
        kind = wire.get("type")
        if kind == "mcp_call":
            # An MCP call the engine ran: the model sees it as a tool call and its result.
            _tool_call(messages, ToolCall(item.id, wire.get("name") or "", wire.get("arguments") or ""))
            error = wire.get("error")
            output = f"Error: {error.get('message')}" if isinstance(error, dict) else wire.get("output") or ""
            messages.append(ChatMessage("tool", output, tool_call_id=item.id))
            continue
        if kind == "mcp_approval_response" and not wire.get("approve"):
            request = requests.get(wire.get("approval_request_id") or "")
            if request is not None:
                call = ToolCall(request["id"], request.get("name") or "", request.get("arguments") or "")
                _tool_call(messages, call)
                reason = f" ({wire['reason']})" if wire.get("reason") else ""
                messages.append(
                    ChatMessage("tool", f"The user declined this call{reason}.", tool_call_id=request["id"])
                )
            continue
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


def estimate_tokens(message: ChatMessage) -> int:
    """A backend-independent token estimate: ~4 characters a token for English, plus the template."""
    chars = len(message.content) + sum(len(c.arguments) + len(c.name) for c in message.tool_calls)
    return -(-chars // 4) + MESSAGE_OVERHEAD_TOKENS


def history_budget(
    truncation: Any, context_tokens: int | None, max_output_tokens: int | None, instructions: str
) -> int:
    """Tokens the history may use: the context minus the reply's room and the instructions,
    capped by ``truncation.token_limits.post_instructions``."""
    context = context_tokens or DEFAULT_CONTEXT_TOKENS
    reply = min(max_output_tokens or context // 4, context // 2)
    budget = context - reply - estimate_tokens(ChatMessage("system", instructions))
    limits = truncation.get("token_limits") if isinstance(truncation, dict) else None
    if isinstance(limits, dict) and isinstance(limits.get("post_instructions"), int):
        budget = min(budget, limits["post_instructions"])
    return max(budget, 0)


def truncate_history(history: list[ChatMessage], truncation: Any, budget: int) -> list[ChatMessage]:
    """The GA ``truncation`` rules applied to the model's input (the conversation keeps every item).

    Nothing is dropped while the history fits. When it does not: ``"disabled"`` raises
    :class:`ContextOverflow`; ``"auto"`` drops the oldest messages until it fits;
    ``retention_ratio`` drops down to that fraction of the budget, so the next turns fit
    without truncating again. A tool call is never separated from its output.
    """
    sizes = [estimate_tokens(m) for m in history]
    if sum(sizes) <= budget:
        return history
    if truncation == "disabled":
        raise ContextOverflow(
            f"The conversation (~{sum(sizes)} tokens) exceeds the {budget}-token input limit and "
            "truncation is disabled."
        )
    target = budget
    if isinstance(truncation, dict) and truncation.get("type") == "retention_ratio":
        ratio = truncation.get("retention_ratio")
        if isinstance(ratio, int | float) and 0 <= ratio <= 1:
            target = int(budget * ratio)
    kept: list[ChatMessage] = []
    used = 0
    for message, size in zip(reversed(history), reversed(sizes), strict=True):
        if kept and used + size > target and message.role != "tool" and kept[-1].role != "tool":
            break
        kept.append(message)
        used += size
    kept.reverse()
    return kept


def build_messages(
    instructions: str,
    items: Iterable[Item],
    truncation: Any = "auto",
    context_tokens: int | None = None,
    max_output_tokens: int | None = None,
) -> list[ChatMessage]:
    history = item_messages(items)
    budget = history_budget(truncation, context_tokens, max_output_tokens, instructions)
    kept = truncate_history(history, truncation, budget)
    system = [ChatMessage("system", instructions.strip())] if instructions.strip() else []
    return system + kept
