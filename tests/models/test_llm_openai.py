"""The OpenAI-compatible backend against a real server: llama.cpp's, on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from parley.engine.config import ModelConfig
from parley.engine.models.assets import smollm2_gguf_path
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

pytestmark = [pytest.mark.models]

WEATHER = ToolSpec(
    "get_weather",
    "Get the current weather for a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server] (make install)")
    port = _free_port()
    cmd = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(smollm2_gguf_path()),
        "--host", "127.0.0.1", "--port", str(port),
        "--chat_format", "chatml-function-calling",
        "--n_ctx", "1024", "--n_threads", "1",
    ]  # fmt: skip
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    log = log_path.open("wb")  # a file, not a pipe: llama.cpp logs enough to fill a pipe and block
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited: {log_path.read_text(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "llama_cpp.server did not start within 60 s"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


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
