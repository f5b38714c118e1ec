"""LLM backend for any OpenAI-compatible chat-completions endpoint.

OpenAI itself, Ollama, vLLM, llama.cpp's server…: streamed with usage, tool
calls mapped to :class:`ToolCallDelta`. Closing the stream closes the HTTP
response, which is how these servers learn to stop generating.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import Any

from parley.engine.models.base import (
    ChatChunk,
    ChatMessage,
    ChatRequest,
    Finish,
    TextDelta,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
)
from parley.engine.models.llm_tools import new_call_id

log = logging.getLogger(__name__)


class OpenAICompatibleLLM:
    name = "openai"
    decides_tools = True  # a real server's model picks tools itself in "auto"

    async def prefill(self, request: ChatRequest) -> int:
        return 0  # the server's own prompt caching is out of our hands

    def forget(self, key: str) -> None:
        pass

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        model: str | None,
        timeout: float = 60.0,
        max_tokens: int | None = None,
    ) -> None:
        from openai import AsyncOpenAI

        self.base_url = base_url
        self.model = model or "default"
        self.max_tokens = max_tokens
        # Local servers need no key, but the client insists on one.
        self._client = AsyncOpenAI(
            base_url=base_url, api_key=api_key or "not-needed", timeout=timeout, max_retries=1
        )

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ChatChunk, None]:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [_message(m) for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools and request.tool_choice.mode != "none":
            kwargs["tools"] = [_tool(t) for t in request.tools]
            kwargs["tool_choice"] = _tool_choice(request.tool_choice)
            if request.parallel_tool_calls is not None:
                kwargs["parallel_tool_calls"] = request.parallel_tool_calls
        if request.reasoning_effort is not None:
            kwargs["reasoning_effort"] = request.reasoning_effort
        max_tokens = request.max_tokens or self.max_tokens
        if max_tokens:
            kwargs["max_tokens"] = max_tokens
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature

        stream = await self._client.chat.completions.create(**kwargs)
        reason: str | None = None
        usage: tuple[int, int] | None = None
        n_chunks = 0
        started: dict[int, bool] = {}  # tool call index → first delta sent
        pending: dict[int, dict[str, Any]] = {}  # fragments that arrived before the name
        try:
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = (chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
                for choice in chunk.choices:
                    n_chunks += 1
                    delta = choice.delta
                    if delta is not None and delta.content:
                        yield TextDelta(delta.content)
                    for call in (delta.tool_calls or []) if delta is not None else []:
                        for out in _tool_deltas(call, started, pending):
                            yield out
                    if choice.finish_reason:
                        reason = choice.finish_reason
        finally:
            await stream.close()
        if reason is None:
            # llama.cpp's server, for one, reports errors raised mid-stream by just ending it.
            raise RuntimeError(f"{self.base_url}: the stream ended without a finish_reason")
        for index, frag in pending.items():  # a server that never sent a name: still report the call
            if not started.get(index):
                yield ToolCallDelta(
                    index=index,
                    call_id=frag.get("id") or new_call_id(),
                    name=frag.get("name") or "",
                    arguments=frag["args"],
                )
                started[index] = True
        if reason in ("tool_calls", "function_call") or (started and reason == "stop"):
            final = "tool_calls"
        elif reason == "length":
            final = "length"
        else:
            final = "stop"
        if usage is None:  # server ignores include_usage: ~one streamed chunk per token
            usage = (0, max(0, n_chunks - 1))
        yield Finish(final, usage[0], usage[1])  # type: ignore[arg-type]

    async def warmup(self) -> None:
        """One tiny request: proves the server is reachable and loads its model."""
        async for _ in self.stream(ChatRequest([ChatMessage("user", "Hi")], max_tokens=1)):
            pass

    async def close(self) -> None:
        await self._client.close()


def _tool_deltas(
    call: Any, started: dict[int, bool], pending: dict[int, dict[str, Any]]
) -> list[ToolCallDelta]:
    index = call.index or 0
    fn = call.function
    args = (fn.arguments if fn is not None else None) or ""
    name = fn.name if fn is not None else None
    if started.get(index):
        return [ToolCallDelta(index=index, arguments=args)] if args else []
    frag = pending.setdefault(index, {"id": None, "name": None, "args": ""})
    frag["id"] = frag["id"] or call.id
    frag["name"] = frag["name"] or name
    frag["args"] += args
    if not frag["name"]:
        return []  # hold arguments until the call's name is known
    started[index] = True
    del pending[index]
    return [
        ToolCallDelta(
            index=index, call_id=frag["id"] or new_call_id(), name=frag["name"], arguments=frag["args"]
        )
    ]


def _message(m: ChatMessage) -> dict[str, Any]:
    if m.role == "assistant" and m.tool_calls:
        return {
            "role": "assistant",
            # "" rather than null: OpenAI accepts both, several compatible servers (llama.cpp's) only a string.
            "content": m.content or "",
            "tool_calls": [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments or "{}"},
                }
                for c in m.tool_calls
            ],
        }
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.content}
    return {"role": m.role, "content": m.content}


def _tool(t: ToolSpec) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": t.name, "parameters": t.parameters or {"type": "object", "properties": {}}}
    if t.description:
        fn["description"] = t.description
    return {"type": "function", "function": fn}


def _tool_choice(choice: ToolChoice) -> Any:
    if choice.mode == "function":
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode
