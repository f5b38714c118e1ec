"""Choosing a tool for ``tool_choice: "auto"`` when the local model cannot.

A 135M-parameter model rarely decides on its own to call a tool. For such
backends the engine routes explicitly: when the user's latest message names a
tool or the subject it serves ("…the weather in Paris?" → ``get_weather``),
the reply is generated as a call to that tool, with arguments constrained to
its JSON Schema by the backend; otherwise the model answers in words. After a
tool result, the model always answers in words, so a call never loops.

Larger models behind the OpenAI-compatible backend decide for themselves.
"""

from __future__ import annotations

import re

from parley.engine.models.base import ChatMessage, ToolChoice, ToolSpec

# Words that say nothing about what a tool is for.
_GENERIC = {
    "get",
    "set",
    "do",
    "run",
    "make",
    "fetch",
    "find",
    "lookup",
    "look",
    "check",
    "tool",
    "call",
    "use",
    "the",
    "a",
    "an",
    "of",
    "for",
    "to",
    "in",
    "on",
    "at",
    "by",
    "with",
    "and",
    "or",
    "is",
    "are",
    "be",
    "current",
    "given",
    "some",
    "any",
    "this",
    "that",
    "it",
    "its",
    "from",
    "into",
    "about",
    "return",
    "returns",
    "value",
    "data",
    "info",
    "information",
    "function",
    "user",
    "list",
    "add",
    "new",
    "create",
}


def _tokens(text: str) -> set[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    words = re.findall(r"[a-z0-9]+", spaced.lower())
    return {w[:-1] if len(w) > 4 and w.endswith("s") else w for w in words}


def _subject(tool: ToolSpec) -> set[str]:
    """The words that say what a tool is about: its name, minus generic verbs."""
    return _tokens(tool.name) - _GENERIC


def route(messages: list[ChatMessage], tools: list[ToolSpec]) -> str | None:
    """Name of the tool the latest user message asks for, if any."""
    if not tools or not messages or messages[-1].role != "user":
        return None
    said = _tokens(messages[-1].content)
    best, best_score = None, 0
    for tool in tools:
        if tool.name.lower() in messages[-1].content.lower():
            return tool.name  # named outright ("use the get_weather tool")
        score = len(_subject(tool) & said)
        if score > best_score:
            best, best_score = tool.name, score
    return best


def choose(messages: list[ChatMessage], tools: list[ToolSpec]) -> ToolChoice:
    """The effective tool choice for an "auto" request to a model that cannot decide."""
    if messages and messages[-1].role == "tool":
        return ToolChoice("none")  # answer the tool result in words; never loop on calls
    routed = route(messages, tools)
    return ToolChoice("function", routed) if routed else ToolChoice("auto")
