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

from parley.engine.models.base import ChatMessage, ToolChoice, ToolSpec
from parley.engine.models.tool_words import name_subject, words


def route(messages: list[ChatMessage], tools: list[ToolSpec]) -> str | None:
    """Name of the tool the latest user message asks for, if any."""
    if not tools or not messages or messages[-1].role != "user":
        return None
    said = words(messages[-1].content)
    best, best_score = None, 0
    for tool in tools:
        if tool.name.lower() in messages[-1].content.lower():
            return tool.name  # named outright ("use the get_weather tool")
        score = len(name_subject(tool) & said)
        if score > best_score:
            best, best_score = tool.name, score
    return best


def choose(messages: list[ChatMessage], tools: list[ToolSpec]) -> ToolChoice:
    """The effective tool choice for an "auto" request to a model that cannot decide."""
    if messages and messages[-1].role == "tool":
        return ToolChoice("none")  # answer the tool result in words; never loop on calls
    routed = route(messages, tools)
    return ToolChoice("function", routed) if routed else ToolChoice("auto")
