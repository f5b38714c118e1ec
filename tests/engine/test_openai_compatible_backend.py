"""The voice pipeline with its LLM behind an OpenAI-compatible server (llama.cpp's, on loopback).

The same engine, the same protocol: only the LLM stage is a remote chat-completions server.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai import AsyncOpenAI

from parley.engine.config import EngineConfig
from parley.engine.models.llm_openai import OpenAICompatibleLLM
from parley.host.app import create_engine_app
from parley.host.runtime import EngineRuntime
from tests.engine.test_realtime_e2e import Connection, received_audio, transcribe_back
from tests.support.llama_server import llama_server
from tests.support.servers import RunningServer, serve_app
from tests.support.text import char_similarity

pytestmark = [pytest.mark.models]

TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]


@pytest.fixture(scope="module")
async def remote_llm_engine(
    models: Any, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningServer]:
    with llama_server(tmp_path_factory.mktemp("llama")) as url:
        llm = OpenAICompatibleLLM(base_url=url, api_key=None, model="smollm2", max_tokens=150)
        remote = dataclasses.replace(models, llm=llm)
        runtime = EngineRuntime(EngineConfig(validate_events=True), models=remote)
        async with serve_app(create_engine_app(runtime)) as server:
            yield server


async def test_tool_call_and_spoken_answer_through_an_openai_compatible_llm(
    remote_llm_engine: RunningServer, models: Any
) -> None:
    srv = remote_llm_engine
    client = AsyncOpenAI(api_key="local", base_url=f"{srv.http}/v1", websocket_base_url=f"{srv.ws}/v1")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        c = Connection(conn)
        try:
            await c.log.wait_for("session.created")
            await conn.session.update(
                session={
                    "type": "realtime",
                    "tools": TOOLS,
                    "tool_choice": {"type": "function", "name": "get_weather"},
                }
            )
            await c.log.wait_for("session.updated")
            await conn.conversation.item.create(
                item={
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "What is the weather like in Paris?"}],
                }
            )
            await conn.response.create()
            done = await c.log.wait_for("response.done", timeout=60)
            call = done["response"]["output"][-1]
            assert call["type"] == "function_call" and call["status"] == "completed", done["response"]
            assert call["name"] == "get_weather" and isinstance(json.loads(call["arguments"])["city"], str)
            assert c.log.of("response.function_call_arguments.delta")
            await conn.conversation.item.create(
                item={
                    "type": "function_call_output",
                    "call_id": call["call_id"],
                    "output": json.dumps({"sky": "sunny", "celsius": 21}),
                }
            )
            await conn.response.create(response={"tool_choice": "none"})
            spoken = await c.log.wait_for(
                "response.done", timeout=60, where=lambda e: e["response"]["id"] != done["response"]["id"]
            )
            # completed, or cut by the backend's token cap (reported as max_output_tokens)
            assert spoken["response"]["status"] in ("completed", "incomplete"), spoken["response"][
                "status_details"
            ]
            transcript = spoken["response"]["output"][0]["content"][0]["transcript"]
            audio = received_audio(c.log, spoken["response"]["id"])
            assert transcript.strip() and len(audio) > 24000 * 0.5
            assert char_similarity(transcript, await transcribe_back(models, audio)) >= 0.7
        finally:
            await c.close()
