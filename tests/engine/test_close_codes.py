"""Close codes clients act on, and what openai-python does with each.

A session that reaches its maximum duration closes with 1001 (going away) and
openai-python reconnects on its own; a message over the transport limit closes
with 1009 and a client too slow to read its events with 1013 (overload);
refusals are 1008 (policy). openai-python's own policy decides which it retries.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from openai import AsyncOpenAI, WebSocketConnectionClosedError
from openai.types.websocket_reconnection import ReconnectingEvent, is_recoverable_close

from parley.client.transport_ws import WebSocketTransport
from parley.host.app import create_engine_app
from parley.host.transports import websocket as ws_transport
from parley.protocol import close_codes
from tests.support.serve import fake_runtime
from tests.support.servers import serve_app


def test_our_reconnect_policy_matches_openai_python() -> None:
    for code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013):
        if code == 1000:
            continue  # a normal close: openai-python stops, Parley's terminal client starts a new session
        assert close_codes.should_reconnect(code) == is_recoverable_close(code), code
    assert close_codes.should_reconnect(None)  # no close frame at all: the line dropped


async def _close_code(ws: websockets.ClientConnection, timeout: float = 10) -> int | None:
    with pytest.raises(websockets.ConnectionClosed) as info:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    return info.value.rcvd.code if info.value.rcvd else None


async def test_expired_session_closes_1001_and_openai_python_reconnects() -> None:
    async with serve_app(create_engine_app(fake_runtime(max_session_seconds=1))) as srv:
        async with websockets.connect(f"{srv.ws}/v1/realtime") as ws:
            assert await _close_code(ws) == close_codes.GOING_AWAY

        attempts: list[ReconnectingEvent] = []
        client = AsyncOpenAI(api_key="anything", base_url=f"{srv.http}/v1", websocket_base_url=f"{srv.ws}/v1")
        async with client.realtime.connect(model="gpt-realtime", on_reconnecting=attempts.append) as conn:
            created = 0
            async with asyncio.timeout(15):
                async for event in conn:
                    created += event.type == "session.created"
                    if created == 2:
                        break
        assert [a.close_code for a in attempts] == [1001]


async def test_oversize_message_closes_1009_and_openai_python_does_not_reconnect() -> None:
    limit = 64 * 1024
    app = create_engine_app(fake_runtime(max_message_bytes=limit // 2))
    async with serve_app(app, ws_max_size=limit) as srv:
        async with websockets.connect(f"{srv.ws}/v1/realtime") as ws:
            await ws.send("x" * (limit + 1))
            assert await _close_code(ws) == close_codes.TOO_BIG

        attempts: list[ReconnectingEvent] = []
        client = AsyncOpenAI(api_key="anything", base_url=f"{srv.http}/v1", websocket_base_url=f"{srv.ws}/v1")
        async with client.realtime.connect(model="gpt-realtime", on_reconnecting=attempts.append) as conn:
            await conn.send_raw("y" * (limit + 1))
            with pytest.raises((websockets.ConnectionClosed, WebSocketConnectionClosedError)):
                async with asyncio.timeout(10):
                    async for _ in conn:
                        pass
        assert attempts == []


async def test_a_message_under_the_transport_limit_but_over_the_engine_limit_is_an_error() -> None:
    limit = 64 * 1024
    async with serve_app(
        create_engine_app(fake_runtime(max_message_bytes=limit // 2)), ws_max_size=limit
    ) as srv:
        async with websockets.connect(f"{srv.ws}/v1/realtime") as ws:
            await ws.send(json.dumps({"type": "session.update", "pad": "z" * (limit // 2)}))
            async with asyncio.timeout(5):
                while (event := json.loads(await ws.recv()))["type"] != "error":
                    pass
            assert event["error"]["code"] == "message_too_large"
            await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
            async with asyncio.timeout(5):
                while json.loads(await ws.recv())["type"] != "input_audio_buffer.cleared":
                    pass


async def test_a_client_that_does_not_read_is_cut_off_with_1013(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ws_transport, "MAX_PENDING_EVENTS", 8)
    runtime = fake_runtime()
    async with serve_app(create_engine_app(runtime)) as srv:
        async with websockets.connect(f"{srv.ws}/v1/realtime") as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
            session = next(iter(runtime.sessions.values()))
            # Nine events in one go, with no chance for the writer to drain them.
            for _ in range(9):
                session.emit({"type": "input_audio_buffer.cleared"})
            assert await _close_code(ws) == close_codes.OVERLOADED
        assert is_recoverable_close(close_codes.OVERLOADED)


async def test_terminal_client_gives_up_on_policy_and_size_closes() -> None:
    from parley.client.transport import ConnectionLost

    for code, fatal in ((1001, False), (1008, True), (1009, True), (1013, False)):
        err = websockets.ConnectionClosedError(websockets.frames.Close(code, "x"), None)
        transport = WebSocketTransport.__new__(WebSocketTransport)
        transport.url = "ws://test"

        class Conn:
            async def recv_bytes(self, err: Exception = err) -> bytes:
                raise err

        transport._conn = Conn()  # type: ignore[assignment]
        with pytest.raises(ConnectionLost) as info:
            await transport.recv()
        assert info.value.fatal is fatal, code
