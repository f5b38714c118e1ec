"""The OpenAI-compatible backend against a real server: llama.cpp's, on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from parley.engine.config import ModelConfig
from parley.engine.models.base import (
    ChatMessage,
    ChatRequest,
    Finish,
    TextDelta,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
)
from parley.engine.models.llm_openai import OpenAICompatibleLLM
from parley.engine.models.registry import load_stage
from tests.support.llama_server import llama_server

pytestmark = [pytest.mark.models]

WEATHER = ToolSpec(
    "get_weather",
    "Get the current weather for a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with llama_server(tmp_path_factory.mktemp("llama-server")) as url:
        yield url


@pytest.fixture
def llm(server_url: str) -> OpenAICompatibleLLM:
    return OpenAICompatibleLLM(base_url=server_url, api_key=None, model="smollm2")


async def test_streams_a_chat_reply(llm) -> None:
    request = ChatRequest(
        [ChatMessage("user", "What is the capital of France?")], max_tokens=40, temperature=0.0
    )
    chunks = [c async for c in llm.stream(request)]
    text = "".join(c.text for c in chunks if isinstance(c, TextDelta))
    assert "Paris" in text
    assert len([c for c in chunks if isinstance(c, TextDelta)]) > 1  # really streamed
    assert isinstance(chunks[-1], Finish) and chunks[-1].reason == "stop"
    assert chunks[-1].output_tokens > 0


async def test_forced_tool_call_end_to_end(llm) -> None:
    request = ChatRequest(
        [ChatMessage("user", "What's the weather in Paris?")],
        tools=[WEATHER],
        tool_choice=ToolChoice("function", "get_weather"),
        temperature=0.0,
    )
    chunks = [c async for c in llm.stream(request)]
    deltas = [c for c in chunks if isinstance(c, ToolCallDelta)]
    assert deltas and deltas[0].name == "get_weather" and deltas[0].call_id
    args = json.loads("".join(d.arguments for d in deltas))
    assert isinstance(args["city"], str) and args["city"]
    assert chunks[-1].reason == "tool_calls"


async def test_server_failure_raises(llm) -> None:
    # This server rejects streamed "auto" tool choice by ending the stream early:
    # the backend must raise rather than report an empty, successful reply.
    request = ChatRequest(
        [ChatMessage("user", "Weather in Rome?")], tools=[WEATHER], tool_choice=ToolChoice("auto")
    )
    with pytest.raises(Exception):  # noqa: B017 - any error; the session turns it into a failed response
        async for _ in llm.stream(request):
            pass


async def test_closing_early_then_reuse(llm) -> None:
    stream = llm.stream(
        ChatRequest([ChatMessage("user", "Tell me a long story.")], max_tokens=200, temperature=0.0)
    )
    async for chunk in stream:
        assert isinstance(chunk, TextDelta)
        break
    await stream.aclose()
    chunks = [c async for c in llm.stream(ChatRequest([ChatMessage("user", "Say hello.")], max_tokens=10))]
    assert isinstance(chunks[-1], Finish)


async def test_registry_loads_and_warms_the_openai_backend(server_url: str) -> None:
    cfg = ModelConfig(llm="openai", llm_base_url=server_url, llm_model="smollm2")
    loaded = await load_stage("llm", cfg)
    assert loaded.backend == "openai" and loaded.model.name == "openai"
    await loaded.model.close()
