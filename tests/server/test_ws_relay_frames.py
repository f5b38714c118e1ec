"""The relay's frame path (``parley serve``'s uvicorn protocol + a remote upstream) against a scripted
upstream: what goes through intact, backpressure, closes with reasons, and the ASGI fallback."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import websockets

import parley.server.ws_relay as ws_relay
from parley.server.tools import ToolRegistry
from tests.server.test_ws_relay import relayed_tool_turn
from tests.support.serve import serve_remote
from tests.support.servers import free_port

Handler = Callable[[Any], Awaitable[None]]


@contextlib.asynccontextmanager
async def scripted_upstream(handler: Handler) -> AsyncIterator[str]:
    """A Realtime-ish upstream that sends ``session.created`` and then runs ``handler``."""

    async def session(ws: Any) -> None:
        await ws.send(json.dumps({"type": "session.created", "session": {"type": "realtime", "tools": []}}))
        await handler(ws)

    port = free_port()
    async with websockets.serve(session, "127.0.0.1", port, max_size=2**25, compression=None):
        yield f"http://127.0.0.1:{port}/v1"


@contextlib.asynccontextmanager
async def relay_to(handler: Handler, **kw: Any) -> AsyncIterator[Any]:
    """The relay (no server tools: no injection handshake) to a scripted upstream."""
    async with (
        scripted_upstream(handler) as url,
        serve_remote(upstream_url=url, registry=ToolRegistry(), **kw) as srv,
    ):
        yield srv


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Which relay path each session took."""
    taken: list[str] = []
    frames, pumps = ws_relay._relay_frames, ws_relay._relay_pumps

    async def spy_frames(*args: Any) -> None:
        taken.append("frames")
        await frames(*args)

    async def spy_pumps(*args: Any) -> None:
        taken.append("pumps")
        await pumps(*args)

    monkeypatch.setattr(ws_relay, "_relay_frames", spy_frames)
    monkeypatch.setattr(ws_relay, "_relay_pumps", spy_pumps)
    return taken


async def echo(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


@pytest.mark.parametrize("ws_impl", [None, "websockets-sansio"])
async def test_messages_of_every_size_and_shape_pass_intact(paths: list[str], ws_impl: str | None) -> None:
    async with (
        relay_to(echo, ws=ws_impl) as srv,
        websockets.connect(f"{srv.ws}/api/realtime/ws", max_size=2**25, compression=None) as ws,
    ):
        assert json.loads(await ws.recv())["type"] == "session.created"
        for size in (0, 1, 125, 126, 65535, 65536, 3_000_000):
            text = json.dumps({"type": "x", "pad": "é" * size}, ensure_ascii=False)
            await ws.send(text)
            assert await ws.recv() == text
        await ws.send(['{"type":', '"fragmented"', "}"])  # one message in three frames
        assert await ws.recv() == '{"type":"fragmented"}'
        await ws.send(b'{"type":"binary"}')  # relayed as text, as it always was
        assert await ws.recv() == '{"type":"binary"}'
        latency = await ws.ping()
        await asyncio.wait_for(latency, 5)
    assert paths == ["frames" if ws_impl is None else "pumps"]


async def test_remote_tool_turn_through_the_asgi_fallback(paths: list[str]) -> None:
    async with serve_remote(ws="websockets-sansio") as srv:
        await relayed_tool_turn(srv)
    assert paths == ["pumps"]


async def test_remote_tool_turn_through_the_frame_path(paths: list[str]) -> None:
    async with serve_remote() as srv:
        await relayed_tool_turn(srv)
    assert paths == ["frames"]


async def test_upstream_close_reaches_the_browser_with_its_reason(paths: list[str]) -> None:
    async def close_after_one(ws: Any) -> None:
        await ws.recv()
        await ws.send('{"type":"last"}')
        await ws.close(4000, "quota exceeded")

    async with relay_to(close_after_one) as srv, websockets.connect(f"{srv.ws}/api/realtime/ws") as ws:
        await ws.recv()
        await ws.send('{"type":"first"}')
        assert await ws.recv() == '{"type":"last"}'
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (4000, "upstream closed: quota exceeded")
        assert await _settled(srv)
    assert paths == ["frames"]


async def test_browser_close_reaches_the_upstream_and_nothing_leaks(paths: list[str]) -> None:
    closed: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    async def wait_close(ws: Any) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for _ in ws:
                pass
        closed.set_result((ws.close_code, ws.close_reason))

    async with relay_to(wait_close) as srv:
        async with websockets.connect(f"{srv.ws}/api/realtime/ws") as ws:
            await ws.recv()
            await ws.send('{"type":"x"}')
            await ws.close(4001, "page closed")
        assert await asyncio.wait_for(closed, 5) == (4001, "client disconnected")
        assert await _settled(srv)
        assert not [t for t in asyncio.all_tasks() if "relay" in repr(t.get_coro())]
    assert paths == ["frames"]


async def test_invalid_utf8_from_the_browser_fails_its_connection() -> None:
    async with relay_to(echo) as srv, websockets.connect(f"{srv.ws}/api/realtime/ws") as ws:
        await ws.recv()
        await ws.send(b"\xff\xfe", text=True)
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1007
        assert await _settled(srv)


async def test_a_browser_that_stops_reading_stops_the_upstream() -> None:
    """Backpressure: the relay stops reading the upstream while the browser's socket is full."""
    sent = 0
    message = json.dumps({"type": "response.output_audio.delta", "delta": "A" * 2**20})
    total = 64

    async def flood(ws: Any) -> None:
        nonlocal sent
        await ws.recv()
        for _ in range(total):
            await ws.send(message)
            sent += 1
        await ws.wait_closed()

    async with relay_to(flood) as srv, websockets.connect(f"{srv.ws}/api/realtime/ws", max_size=2**22) as ws:
        await ws.recv()
        await ws.send('{"type":"go"}')
        # websockets' client stops reading once 16 messages wait in its queue: the browser is stuck.
        await asyncio.sleep(1.5)
        stalled_at = sent
        assert stalled_at < total - 16, stalled_at  # the relay did not soak up the rest in memory
        got = 0
        async with asyncio.timeout(20):
            while got < total:
                assert await ws.recv() == message
                got += 1
        assert sent == total


async def test_an_upstream_that_stops_reading_stops_the_browser() -> None:
    """Backpressure the other way: a page streaming into a stuck upstream is made to wait."""
    message = json.dumps({"type": "input_audio_buffer.append", "audio": "A" * 2**20})
    total = 64
    unstuck = asyncio.Event()
    got = 0

    async def stuck(ws: Any) -> None:
        nonlocal got
        await unstuck.wait()
        async for received in ws:
            assert received == message
            got += 1
            if got == total:
                await ws.send('{"type":"all.received"}')

    async with relay_to(stuck) as srv, websockets.connect(f"{srv.ws}/api/realtime/ws", max_size=2**22) as ws:
        await ws.recv()
        sent = 0

        async def stream() -> None:
            nonlocal sent
            for _ in range(total):
                await ws.send(message)
                sent += 1

        streaming = asyncio.create_task(stream())
        try:
            await asyncio.sleep(1.5)
            assert sent < total - 16, sent
        finally:
            unstuck.set()  # else the scripted upstream's handler would outlive the test
        async with asyncio.timeout(20):
            await streaming
            assert await ws.recv() == '{"type":"all.received"}'


async def _settled(srv: Any) -> bool:
    for _ in range(100):
        if srv.app.state.relays.active == 0:
            return True
        await asyncio.sleep(0.02)
    return False
