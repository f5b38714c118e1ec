"""The OpenAI-compatible backend passes ``parallel_tool_calls`` and ``reasoning_effort`` on.

The request goes through openai-python's real client and serialisation; only the HTTP
transport is an in-process recorder answering with a one-chunk stream.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from openai import AsyncOpenAI

from parley.engine.models.base import ChatMessage, ChatRequest, Finish, ToolSpec
from parley.engine.models.llm_openai import OpenAICompatibleLLM

CHUNK = {
    "id": "c1",
    "object": "chat.completion.chunk",
    "created": 0,
    "model": "m",
    "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi."}, "finish_reason": "stop"}],
}


def recording_llm() -> tuple[OpenAICompatibleLLM, list[dict[str, Any]]]:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        stream = f"data: {json.dumps(CHUNK)}\n\ndata: [DONE]\n\n"
        return httpx.Response(200, text=stream, headers={"content-type": "text/event-stream"})

    llm = OpenAICompatibleLLM(base_url="http://llm.invalid/v1", api_key=None, model="m")
    llm._client = AsyncOpenAI(
        base_url="http://llm.invalid/v1",
        api_key="k",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )
    return llm, bodies


async def test_parameters_reach_the_chat_completions_request() -> None:
    llm, bodies = recording_llm()
    tool = ToolSpec("get_time", "The time.", {"type": "object", "properties": {}})
    request = ChatRequest(
        [ChatMessage("user", "Hi")], tools=[tool], parallel_tool_calls=False, reasoning_effort="low"
    )
    chunks = [c async for c in llm.stream(request)]
    assert isinstance(chunks[-1], Finish)
    assert bodies[-1]["parallel_tool_calls"] is False and bodies[-1]["reasoning_effort"] == "low"
    # Unset: the server's defaults (and no parallel_tool_calls without tools, which servers reject).
    [c async for c in llm.stream(ChatRequest([ChatMessage("user", "Hi")], parallel_tool_calls=True))]
    assert "parallel_tool_calls" not in bodies[-1] and "reasoning_effort" not in bodies[-1]
