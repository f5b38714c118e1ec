"""openai-agents-python's RealtimeRunner against the engine, unchanged but for its URL.

The SDK validates every server event against openai-python's types and turns
failures into error events, so this also checks protocol conformance the way
a real integration would notice it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agents import function_tool
from agents.realtime import RealtimeAgent, RealtimeRunner

from tests.support.servers import RunningServer

pytestmark = [pytest.mark.models]

calls: list[str] = []


@function_tool
def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    calls.append(city)
    return f"It is sunny and 21 degrees in {city}."


async def test_realtime_runner_with_function_tool(engine: RunningServer) -> None:
    agent = RealtimeAgent(
        name="Assistant",
        instructions="You are a helpful voice assistant. Use tools when asked.",
        tools=[get_weather],
    )
    runner = RealtimeRunner(
        agent,
        config={
            "model_settings": {
                "model_name": "gpt-realtime",
                "output_modalities": ["audio"],
                "turn_detection": {"type": "server_vad", "interrupt_response": True},
            }
        },
    )
    errors: list[Any] = []
    seen: list[str] = []
    tool_end: list[Any] = []
    transcript = ""
    session = await runner.run(
        model_config={"url": f"{engine.ws}/v1/realtime?model=gpt-realtime", "api_key": "local"}
    )
    async with session:
        await session.send_message("What is the weather in Paris? Use the get_weather tool.")
        async with asyncio.timeout(120):
            async for event in session:
                seen.append(event.type)
                if event.type == "error":
                    errors.append(event.error)
                elif event.type == "tool_end":
                    tool_end.append(event)
                elif event.type == "raw_model_event" and event.data.type == "raw_server_event":
                    raw = event.data.data
                    if raw.get("type") == "response.output_audio_transcript.done" and tool_end:
                        transcript = raw["transcript"]
                    if (
                        raw.get("type") == "response.done"
                        and tool_end
                        and raw["response"]["status"] == "completed"
                        and transcript
                    ):
                        break
    assert not errors, errors
    assert calls and "paris" in calls[0].lower()
    assert "tool_start" in seen and "tool_end" in seen
    assert "sunny" in str(tool_end[0].output)
    assert transcript.strip()


async def test_realtime_agent_hands_off_to_another_agent(engine: RunningServer) -> None:
    """An unmodified RealtimeAgent with handoffs: the SDK runs the transfer client-side
    (``transfer_to_billing`` → ``session.update`` with the billing agent → output → response)."""
    billing = RealtimeAgent(
        name="billing",
        handoff_description="Bills, invoices, payments, charges and refunds.",
        instructions="You are the billing specialist. Help the caller with their invoice in one short sentence.",
    )
    greeter = RealtimeAgent(
        name="greeter",
        instructions="You are the front desk. Transfer callers with billing questions to billing.",
        handoffs=[billing],
    )
    runner = RealtimeRunner(greeter, config={"model_settings": {"model_name": "gpt-realtime"}})
    errors: list[Any] = []
    handoffs: list[Any] = []
    answer = ""
    session = await runner.run(
        model_config={"url": f"{engine.ws}/v1/realtime?model=gpt-realtime", "api_key": "local"}
    )
    async with session:
        await session.send_message("I want to talk to billing about my invoice.")
        async with asyncio.timeout(120):
            async for event in session:
                if event.type == "error":
                    errors.append(event.error)
                elif event.type == "handoff":
                    handoffs.append(event)
                elif event.type == "raw_model_event" and event.data.type == "raw_server_event":
                    raw = event.data.data
                    if raw.get("type") == "response.output_audio_transcript.done" and handoffs:
                        answer = raw["transcript"]
                    if raw.get("type") == "response.done" and handoffs and answer:
                        break
    assert not errors, errors
    assert [(h.from_agent.name, h.to_agent.name) for h in handoffs] == [("greeter", "billing")]
    assert answer.strip()
