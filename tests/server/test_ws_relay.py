"""``WS /api/realtime/ws`` with fake models: relayed turns, server tools, and closing in both directions."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from openai import AsyncOpenAI

from parley.protocol.validation import validate_server_event
from parley.server.tools import ToolRunner, default_registry
from parley.server.ws_relay import rewrite_session_update
from tests.support.serve import Serve, serve_local, serve_remote


async def recv(ws: Any, kind: str, within: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            event = json.loads(await ws.recv())
            validate_server_event(event)
            if event["type"] == kind:
                return event


async def relayed_tool_turn(srv: Serve) -> None:
    """openai-python through the relay: a forced server-tool call, answered by the server, then the reply."""
    # openai-python appends /realtime to its base URL: /api/v1/realtime is the relay's alias for that.
    client = AsyncOpenAI(
        api_key="unused-by-the-relay", base_url=f"{srv.http}/api/v1", websocket_base_url=f"{srv.ws}/api/v1"
    )
    async with client.realtime.connect(model="gpt-realtime") as conn:
        first = await conn.recv()
        assert first.type == "session.created"
        assert "get_current_time" in {t.name for t in first.session.tools}  # type: ignore[union-attr]
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "What time is it in Paris?"}],
            }
        )
        await conn.response.create(response={"tool_choice": {"type": "function", "name": "get_current_time"}})
        seen: list[str] = []
        output: str | None = None
        done = 0
        text = ""
        async for event in conn:
            validate_server_event(event.model_dump(mode="json", exclude_unset=True))
            seen.append(event.type)
            if event.type == "conversation.item.done" and event.item.type == "function_call_output":
                output = event.item.output
            if event.type == "response.output_text.delta":
                text += event.delta
            if event.type == "response.done":
                done += 1
                if done == 2:
                    break
        assert "response.function_call_arguments.done" in seen
        assert output is not None and '"timezone"' in output and '"time"' in output
        assert "Paris" in text  # the fake model's reply after the tool result
        assert not any(t == "error" for t in seen), seen


async def test_openai_python_tool_turn_through_local_relay() -> None:
    async with serve_local() as srv:
        await relayed_tool_turn(srv)
        assert srv.app.state.relays.active == 0 or await _settled(srv)


async def test_openai_python_tool_turn_through_remote_relay() -> None:
    async with serve_remote() as srv:
        await relayed_tool_turn(srv)


async def _settled(srv: Serve) -> bool:
    for _ in range(100):
        if srv.app.state.relays.active == 0 and not (srv.runtime and srv.runtime.sessions):
            return True
        await asyncio.sleep(0.02)
    return False


async def test_page_session_update_keeps_server_tools() -> None:
    async with (
        serve_local() as srv,
        websockets.connect(f"{srv.ws}/api/realtime/ws", subprotocols=["realtime"]) as ws,
    ):
        await recv(ws, "session.created")
        await ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "type": "realtime",
                        "tools": [
                            {
                                "type": "function",
                                "name": "show_color",
                                "description": "x",
                                "parameters": {"type": "object"},
                            },
                            {
                                "type": "function",
                                "name": "calculate",
                                "description": "the page's own, replaced",
                            },
                        ],
                    },
                }
            )
        )
        updated = await recv(ws, "session.updated")
        tools = {t["name"]: t for t in updated["session"]["tools"]}
        assert "show_color" in tools and "add_note" in tools
        assert tools["calculate"]["description"].startswith("Evaluate")
        # Clearing tools from the page still leaves the server's.
        await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "tools": []}}))
        updated = await recv(ws, "session.updated")
        assert {t["name"] for t in updated["session"]["tools"]} == set(default_registry().tools)


def test_rewrite_leaves_other_frames_alone() -> None:
    reg = default_registry()
    assert rewrite_session_update("{bad", reg) == "{bad"
    frame = json.dumps({"type": "session.update", "session": {"type": "realtime", "instructions": "x"}})
    assert rewrite_session_update(frame, reg) == frame


def test_tool_runner_parses_only_the_events_it_acts_on() -> None:
    interesting = ToolRunner.interesting
    for kind in ("response.output_item.done", "response.done", "error", "session.updated", "session.created"):
        assert interesting(
            json.dumps({"type": kind, "x": 1}, separators=(",", ":"))
        )  # type first: read there
        assert interesting(json.dumps({"event_id": "e", "type": kind}))  # any other layout: scanned
        assert interesting(json.dumps({"type": kind}))  # '{"type": "…"', with a space
    delta = {"type": "response.output_audio.delta", "delta": "UklGRg==" * 200}
    assert not interesting(json.dumps(delta, separators=(",", ":")))
    assert not interesting(json.dumps({"event_id": "e", **delta}))
    assert not interesting('{"type":"response.done_not"}')


async def test_upstream_drop_closes_browser_with_reason_and_leaks_nothing() -> None:
    async with serve_local() as srv, websockets.connect(f"{srv.ws}/api/realtime/ws") as ws:
        await recv(ws, "session.created")
        assert srv.runtime is not None
        (session,) = srv.runtime.sessions.values()
        await srv.runtime.end_session(session)  # the upstream session ends under the relay
        with pytest.raises(websockets.ConnectionClosed) as info:
            async with asyncio.timeout(5):
                while True:
                    await ws.recv()
        assert info.value.rcvd is not None and "upstream closed" in info.value.rcvd.reason
        assert await _settled(srv)


async def test_remote_upstream_dies_closes_browser() -> None:
    async with serve_remote() as srv:
        assert srv.engine is not None
        async with websockets.connect(f"{srv.ws}/api/realtime/ws") as ws:
            await recv(ws, "session.created")
            assert srv.runtime is not None
            (session,) = srv.runtime.sessions.values()
            await srv.runtime.end_session(session)
            with pytest.raises(websockets.ConnectionClosed) as info:
                async with asyncio.timeout(5):
                    while True:
                        await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.reason.startswith("upstream closed")
        assert await _settled(srv)


async def test_browser_close_ends_upstream_session() -> None:
    for make in (serve_local, serve_remote):
        async with make() as srv:
            async with websockets.connect(f"{srv.ws}/api/realtime/ws") as ws:
                await recv(ws, "session.created")
                assert srv.runtime is not None and len(srv.runtime.sessions) == 1
                assert srv.app.state.relays.active == 1
            assert await _settled(srv), make.__name__
            before = {t for t in asyncio.all_tasks() if not t.done()}
            assert not [t for t in before if "relay" in repr(t.get_coro())], before


async def test_relayed_bad_input_gets_upstream_errors_and_session_goes_on() -> None:
    async with serve_local() as srv, websockets.connect(f"{srv.ws}/api/realtime/ws") as ws:
        await recv(ws, "session.created")
        await ws.send("{not json")
        error = await recv(ws, "error")
        assert error["error"]["code"] == "invalid_event"
        await ws.send(
            json.dumps({"type": "session.update", "event_id": "ev1", "session": {"instructions": "x"}})
        )
        error = await recv(ws, "error")
        assert error["error"]["event_id"] == "ev1"
        await ws.send(
            json.dumps(
                {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}
            )
        )
        await recv(ws, "session.updated")


async def test_relay_session_limit() -> None:
    async with (
        serve_local(max_relay_sessions=1) as srv,
        websockets.connect(f"{srv.ws}/api/realtime/ws") as ws,
    ):
        await recv(ws, "session.created")
        async with websockets.connect(f"{srv.ws}/api/realtime/ws") as second:
            assert (await recv(second, "error"))["error"]["code"] == "session_limit_reached"
            with pytest.raises(websockets.ConnectionClosed) as info:
                await second.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1013


async def test_forced_tool_choice_does_not_loop() -> None:
    """A session forcing a server tool: the relay's follow-up lets the model answer (reset_tool_choice)."""
    async with serve_local() as srv, websockets.connect(f"{srv.ws}/api/realtime/ws") as ws:
        await recv(ws, "session.created")
        await ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "type": "realtime",
                        "output_modalities": ["text"],
                        "tool_choice": {"type": "function", "name": "calculate"},
                    },
                }
            )
        )
        await recv(ws, "session.updated")
        await ws.send(
            json.dumps(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "2+2?"}],
                    },
                }
            )
        )
        await ws.send(json.dumps({"type": "response.create"}))
        first = await recv(ws, "response.done")
        assert first["response"]["output"][0]["type"] == "function_call"
        second = await recv(ws, "response.done")
        assert second["response"]["output"][0]["type"] == "message"
