"""MCP tools with fake models against a real MCP server (the ``mcp`` SDK) on loopback.

Listing, calls, approval, and bad servers (unreachable, erroring, slow, huge results):
each fails that listing or call with the GA events and items, never the session. Every
server event is validated strictly against openai-python's types (EventLog).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from parley.engine import mcp_tools
from tests.engine.test_session_orchestration import make
from tests.support.fakes import FakeLlm, FakeModels
from tests.support.mcp_server import mcp_server
from tests.support.servers import free_port


def mcp_tool(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "mcp", "server_label": "weather", "server_url": url, "require_approval": "never", **extra}


def configure(session: Any, tools: list[dict[str, Any]]) -> None:
    session.receive(json.dumps({"type": "session.update", "session": {"type": "realtime", "tools": tools}}))


def respond(session: Any, tool: str | None = None) -> None:
    response = {"tool_choice": {"type": "mcp", "server_label": "weather", "name": tool}} if tool else {}
    session.receive(json.dumps({"type": "response.create", "response": response}))


async def listed(log: Any, start: int = 0) -> dict[str, Any]:
    await log.wait_for("mcp_list_tools.completed", start=start)
    return await log.wait_for(
        "conversation.item.done", start=start, where=lambda e: e["item"]["type"] == "mcp_list_tools"
    )


async def test_list_call_and_spoken_answer() -> None:
    async with mcp_server() as (url, calls, headers):
        session, log, models = make(FakeModels(llm=FakeLlm(reply="It is sunny in Paris.")))
        configure(session, [mcp_tool(url, headers={"X-Weather-Key": "k1"}, allowed_tools=["get_weather"])])
        added = await log.wait_for("conversation.item.added")
        assert added["item"]["type"] == "mcp_list_tools" and added["item"]["tools"] == []
        progress = await log.wait_for("mcp_list_tools.in_progress")
        assert progress["item_id"] == added["item"]["id"]
        done = (await listed(log))["item"]
        assert [t["name"] for t in done["tools"]] == ["get_weather"]  # allowed_tools filters the list
        assert done["tools"][0]["input_schema"]["properties"]["city"]["type"] == "string"
        assert any(h.get("x-weather-key") == "k1" for h in headers.headers)

        respond(session, "get_weather")
        response = (await log.wait_for("response.done"))["response"]
        assert response["status"] == "completed", response
        call, message = response["output"]
        assert call["type"] == "mcp_call" and call["name"] == "get_weather"
        assert json.loads(call["arguments"]) == {"city": "Paris"}
        assert call["output"] == "It is sunny and 21 degrees in Paris." and not call.get("error")
        assert calls == [("get_weather", {"city": "Paris"})]
        assert message["type"] == "message" and message["content"][0]["transcript"] == "It is sunny in Paris."
        kinds = [e["type"] for e in log.events if e["type"].startswith("response.")]
        order = [
            "response.mcp_call_arguments.delta",
            "response.mcp_call_arguments.done",
            "response.mcp_call.in_progress",
            "response.mcp_call.completed",
            "response.output_audio.delta",
        ]
        positions = [kinds.index(kind) for kind in order]
        assert positions == sorted(positions), kinds
        # The model's second pass saw the call and its result (the spoken answer's source).
        second = models.llm.requests[-1]
        assert second.messages[-1].role == "tool" and "sunny" in second.messages[-1].content
        # Only the allowed tool was offered to the model.
        assert [t.name for t in models.llm.requests[0].tools] == ["get_weather"]
        await session.close()


async def test_approval_request_then_approved_call() -> None:
    async with mcp_server() as (url, calls, _):
        session, log, _ = make(FakeModels(llm=FakeLlm(reply="Sunny.")))
        configure(session, [mcp_tool(url, require_approval={"always": {"tool_names": ["get_weather"]}})])
        await listed(log)
        respond(session, "get_weather")
        response = (await log.wait_for("response.done"))["response"]
        (request,) = response["output"]
        assert request["type"] == "mcp_approval_request" and request["name"] == "get_weather"
        assert json.loads(request["arguments"]) == {"city": "Paris"} and calls == []
        seen = len(log.events)
        session.receive(
            json.dumps(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "mcp_approval_response",
                        "id": "mcpr_approve1",
                        "approval_request_id": request["id"],
                        "approve": True,
                    },
                }
            )
        )
        added = await log.wait_for("conversation.item.added", start=seen)
        assert added["item"]["type"] == "mcp_approval_response" and added["item"]["approve"] is True
        respond(session)
        response = (await log.wait_for("response.done", start=seen))["response"]
        call, message = response["output"]
        assert call["type"] == "mcp_call" and call["approval_request_id"] == request["id"]
        assert "sunny" in call["output"] and calls == [("get_weather", {"city": "Paris"})]
        assert message["content"][0]["transcript"] == "Sunny."
        # A later response does not run it again.
        respond(session)
        await log.wait_for("response.done", start=log.index("response.done", seen) + 1)
        assert len(calls) == 1
        await session.close()


async def test_declined_call_is_not_run_and_the_model_is_told() -> None:
    async with mcp_server() as (url, calls, _):
        session, log, models = make()
        configure(session, [mcp_tool(url, require_approval="always")])
        await listed(log)
        respond(session, "get_weather")
        request = (await log.wait_for("response.done"))["response"]["output"][0]
        seen = len(log.events)
        item = {
            "type": "mcp_approval_response",
            "id": "mcpr_no1",
            "approval_request_id": request["id"],
            "approve": False,
            "reason": "not now",
        }
        session.receive(json.dumps({"type": "conversation.item.create", "item": item}))
        respond(session)
        response = (await log.wait_for("response.done", start=seen))["response"]
        assert [o["type"] for o in response["output"]] == ["message"] and calls == []
        told = models.llm.requests[-1].messages[-1]
        assert told.role == "tool" and "declined" in told.content and "not now" in told.content
        await session.close()


@pytest.mark.parametrize(
    ("tool", "error_type", "fragment"),
    [
        ("broken_tool", "tool_execution_error", "offline"),
        ("slow_tool", "protocol_error", "timed out"),
        ("huge_tool", "tool_execution_error", "more than"),
    ],
)
async def test_failing_calls_fail_the_call_not_the_session(
    tool: str, error_type: str, fragment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mcp_tools, "CALL_TIMEOUT_S", 1.0)
    async with mcp_server() as (url, _, _):
        session, log, _ = make(FakeModels(llm=FakeLlm(reply="Sorry, that did not work.")))
        configure(session, [mcp_tool(url)])
        await listed(log)
        respond(session, tool)
        failed = await log.wait_for("response.mcp_call.failed", timeout=15)
        response = (await log.wait_for("response.done"))["response"]
        call = response["output"][0]
        assert call["id"] == failed["item_id"] and call.get("output") is None
        assert call["error"]["type"] == error_type and fragment in call["error"]["message"], call["error"]
        assert response["status"] == "completed" and response["output"][1]["type"] == "message"
        # The session goes on.
        respond(session)
        await log.wait_for("response.done", start=log.index("response.done") + 1)
        await session.close()


async def test_unreachable_server_fails_the_listing_only() -> None:
    session, log, _ = make()
    configure(session, [mcp_tool(f"http://127.0.0.1:{free_port()}/mcp")])
    failed = await log.wait_for("mcp_list_tools.failed", timeout=15)
    done = await log.wait_for("conversation.item.done", where=lambda e: e["item"]["type"] == "mcp_list_tools")
    assert done["item"]["id"] == failed["item_id"] and done["item"]["tools"] == []
    respond(session)
    response = (await log.wait_for("response.done"))["response"]
    assert response["status"] == "completed"
    await session.close()


async def test_bad_mcp_config_is_an_error() -> None:
    session, log, _ = make()
    for tool, param in (
        ({"type": "mcp", "server_url": "http://127.0.0.1:1/mcp"}, "session.tools[0].server_label"),
        ({"type": "mcp", "server_label": "x", "server_url": "ftp://x"}, "session.tools[0].server_url"),
        (
            {"type": "mcp", "server_label": "x", "connector_id": "connector_gmail"},
            "session.tools[0].connector_id",
        ),
        (
            {
                "type": "mcp",
                "server_label": "x",
                "server_url": "http://h/mcp",
                "require_approval": "sometimes",
            },
            "session.tools[0]",  # openai-python's own types refuse it first
        ),
    ):
        seen = len(log.events)
        configure(session, [tool])
        assert (await log.wait_for("error", start=seen))["error"]["param"].startswith(param)
    await session.close()


async def test_sse_only_server_is_reached_over_sse() -> None:
    async with mcp_server("sse") as (url, calls, _):
        session, log, _ = make(FakeModels(llm=FakeLlm(reply="Sunny.")))
        configure(session, [mcp_tool(url)])
        done = (await listed(log))["item"]
        assert "get_weather" in [t["name"] for t in done["tools"]]
        respond(session, "get_weather")
        response = (await log.wait_for("response.done", timeout=20))["response"]
        assert "sunny" in response["output"][0]["output"] and calls == [("get_weather", {"city": "Paris"})]
        await session.close()


async def test_a_response_can_bring_its_own_mcp_server() -> None:
    async with mcp_server() as (url, calls, _):
        session, log, _ = make(FakeModels(llm=FakeLlm(reply="Sunny.")))
        session.receive(
            json.dumps(
                {
                    "type": "response.create",
                    "response": {
                        "tools": [mcp_tool(url)],
                        "tool_choice": {"type": "mcp", "server_label": "weather", "name": "get_weather"},
                    },
                }
            )
        )
        response = (await log.wait_for("response.done", timeout=20))["response"]
        assert log.of("mcp_list_tools.completed")
        assert response["output"][0]["type"] == "mcp_call" and calls == [("get_weather", {"city": "Paris"})]
        await session.close()
