"""An MCP round trip with the real models, through the engine's WebSocket with openai-python.

List → the local model (tool routing + grammar) calls the MCP tool the user asks about → the
engine runs it on a real MCP server (the ``mcp`` SDK, loopback) → a spoken answer; then an
approval round and a failing call, in one session. Every event is validated strictly.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from tests.engine.test_realtime_e2e import connect, received_audio, transcribe_back
from tests.support.mcp_server import mcp_server
from tests.support.servers import RunningServer
from tests.support.text import char_similarity

pytestmark = [pytest.mark.models]


async def ask(c: Any, text: str, **response: Any) -> dict[str, Any]:
    seen = len(c.log.events)
    await c.conn.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    )
    await c.conn.response.create(response=response or None)
    return (await c.log.wait_for("response.done", start=seen, timeout=60))["response"]


async def spoken(models: Any, c: Any, response: dict[str, Any]) -> str:
    message = response["output"][-1]
    assert message["type"] == "message", response["output"]
    transcript = message["content"][0]["transcript"]
    audio = received_audio(c.log, response["id"])
    assert len(audio) > 24000 * 0.3 and float(np.abs(audio).max()) > 1000
    back = await transcribe_back(models, audio)
    assert char_similarity(transcript, back) >= 0.6, (transcript, back)
    return str(transcript)


async def test_mcp_list_call_approval_and_failure_spoken(engine: RunningServer, models: Any) -> None:
    async with mcp_server() as (url, calls, _):
        tool = {
            "type": "mcp",
            "server_label": "weather",
            "server_url": url,
            "allowed_tools": ["get_weather", "get_stock_price", "broken_tool"],
            "require_approval": {
                "always": {"tool_names": ["get_stock_price"]},
                "never": {"tool_names": ["get_weather", "broken_tool"]},
            },
        }
        async with connect(engine, tools=[tool]) as c:
            done = await c.log.wait_for(
                "conversation.item.done", where=lambda e: e["item"]["type"] == "mcp_list_tools", timeout=20
            )
            assert {t["name"] for t in done["item"]["tools"]} == {
                "get_weather",
                "get_stock_price",
                "broken_tool",
            }

            # 1. The user asks; the local model (its own decision, or the router for a model that
            # cannot decide) calls the tool and speaks the result.
            response = await ask(c, "What is the weather like in Paris?")
            assert response["status"] == "completed", response
            call = response["output"][0]
            assert call["type"] == "mcp_call" and call["name"] == "get_weather", response["output"]
            city = json.loads(call["arguments"])["city"]
            assert calls[-1] == ("get_weather", {"city": city}) and "sunny" in call["output"]
            said = await spoken(models, c, response)
            print("weather answer:", said)

            # 2. Approval: a stock price needs it; approved, it runs and is spoken.
            # (Forced: this step is about the approval flow, not the model's choice.)
            response = await ask(
                c,
                "What is the stock price of ACME?",
                tool_choice={"type": "mcp", "server_label": "weather", "name": "get_stock_price"},
            )
            request = response["output"][-1]
            assert request["type"] == "mcp_approval_request" and request["name"] == "get_stock_price", (
                response
            )
            n_calls = len(calls)
            await c.conn.conversation.item.create(
                item={
                    "type": "mcp_approval_response",
                    "id": "mcpr_real1",
                    "approval_request_id": request["id"],
                    "approve": True,
                }
            )
            seen = len(c.log.events)
            await c.conn.response.create()
            response = (await c.log.wait_for("response.done", start=seen, timeout=60))["response"]
            call = response["output"][0]
            assert call["type"] == "mcp_call" and call["approval_request_id"] == request["id"]
            assert len(calls) == n_calls + 1 and "dollars" in call["output"]
            print("stock answer:", await spoken(models, c, response))

            # 3. A failing tool: mcp_call.failed, the model still answers, the session goes on.
            response = await ask(
                c,
                "Use the broken tool for Paris.",
                tool_choice={"type": "mcp", "server_label": "weather", "name": "broken_tool"},
            )
            call = response["output"][0]
            assert call["type"] == "mcp_call" and call["error"]["type"] == "tool_execution_error", call
            assert c.log.of("response.mcp_call.failed")
            print("failure answer:", await spoken(models, c, response))
