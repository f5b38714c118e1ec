"""The security rows not covered elsewhere, each a test through real sockets (fake models).

Rows covered in other files: the key never leaks (test_session_routes, test_ws_relay,
test_ws_relay_frames), CSP and security headers (test_session_routes), oversized
bodies and SDP (test_session_routes, test_sdp_relay, test_calls_route), a foreign
Origin (test_session_routes), an expired ``ek_`` (test_websocket_transport,
test_calls_route), the mint rate limit (test_session_routes), markup shown as
text (tests/ui/test_markup.py). This file: slow requests, static paths, replayed
``ek_`` secrets and the per-client session limit.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import pytest
import websockets

from parley.host import deadlines
from tests.support.serve import serve_local

DEADLINE_S = 0.5


async def _read_until_closed(reader: asyncio.StreamReader, within: float) -> tuple[bytes, float]:
    t0 = time.perf_counter()
    data = b""
    async with asyncio.timeout(within):
        while chunk := await reader.read(4096):
            data += chunk
    return data, time.perf_counter() - t0


@pytest.fixture
def short_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deadlines, "HEADER_TIMEOUT_S", DEADLINE_S)
    monkeypatch.setattr(deadlines, "BODY_TIMEOUT_S", DEADLINE_S)


def test_stated_deadlines() -> None:
    assert deadlines.HEADER_TIMEOUT_S == 10.0 and deadlines.BODY_TIMEOUT_S == 15.0


@pytest.mark.parametrize(
    "head",
    [
        b"",  # connects and says nothing
        b"GET /api/realtime/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n",  # handshake never ends
    ],
    ids=["silent", "unfinished-websocket-handshake"],
)
async def test_a_stalled_request_head_is_cut(short_deadlines: None, head: bytes) -> None:
    async with serve_local() as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.server.port)
        writer.write(head)
        data, took = await _read_until_closed(reader, 5)
        writer.close()
        assert data.startswith(b"HTTP/1.1 408"), data
        assert DEADLINE_S <= took < DEADLINE_S + 2


async def test_a_trickled_sdp_upload_is_cut(short_deadlines: None, caplog: pytest.LogCaptureFixture) -> None:
    async with serve_local() as srv:
        async with httpx.AsyncClient(base_url=srv.http) as http:
            secret = (await http.post("/api/session")).json()["value"]
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.server.port)
        writer.write(
            b"POST /api/realtime/calls HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/sdp\r\n"
            + f"Authorization: Bearer {secret}\r\nContent-Length: 2000\r\n\r\n".encode()
        )

        async def trickle() -> None:
            for _ in range(100):
                writer.write(b"v")
                await asyncio.sleep(0.1)

        dripping = asyncio.create_task(trickle())
        try:
            data, took = await _read_until_closed(reader, 5)
        finally:
            dripping.cancel()
            writer.close()
        assert data.startswith(b"HTTP/1.1 408"), data
        assert took < DEADLINE_S + 2
        # The keep-alive connection still serves others afterwards, and nothing was logged as a crash.
        async with httpx.AsyncClient(base_url=srv.http) as http:
            assert (await http.get("/api/config")).status_code == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_normal_requests_pass_the_deadlines(short_deadlines: None) -> None:
    async with serve_local() as srv, httpx.AsyncClient(base_url=srv.http) as http:
        for _ in range(3):  # a kept-alive connection, idle between requests for less than the deadline
            assert (await http.get("/api/config")).status_code == 200
            await asyncio.sleep(DEADLINE_S / 2)
        async with websockets.connect(f"{srv.ws}/api/realtime/ws") as ws:
            await asyncio.sleep(DEADLINE_S * 2)  # an open WebSocket is not a slow request
            await ws.send('{"type":"input_audio_buffer.clear"}')
            async with asyncio.timeout(5):
                while '"input_audio_buffer.cleared"' not in await ws.recv():
                    pass


@pytest.mark.parametrize(
    "path",
    [
        "/static/../app.py",
        "/static/../../parley/server/app.py",
        "/static/%2e%2e/%2e%2e/server/app.py",
        "/static/..%2f..%2fserver%2fapp.py",
        "/static/%2e%2e%2f%2e%2e%2fserver%2fconfig.py",
        "/static//etc/passwd",
        "/static/..\\..\\server\\app.py",
        "/static/js/../../../server/app.py",
    ],
)
async def test_static_paths_cannot_escape_the_static_folder(path: str) -> None:
    async with serve_local() as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.server.port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data, _ = await _read_until_closed(reader, 5)
        writer.close()
        status = int(data.split(b" ", 2)[1])
        assert status in (400, 404), data[:200]
        assert b"import" not in data and b"root:" not in data


async def test_a_replayed_ephemeral_key_is_refused() -> None:
    async with serve_local() as srv:
        async with httpx.AsyncClient(base_url=srv.http) as http:
            secret = (await http.post("/api/session")).json()["value"]
        url = f"{srv.ws}/v1/realtime"
        headers = {"Authorization": f"Bearer {secret}"}
        async with websockets.connect(url, additional_headers=headers) as ws:
            assert '"session.created"' in await ws.recv()
        with pytest.raises(websockets.InvalidStatus) as info:
            async with websockets.connect(url, additional_headers=headers):
                pass
        assert info.value.response.status_code == 401
        assert b"already opened a session" in info.value.response.body


async def test_per_client_limit_on_concurrent_sessions() -> None:
    async with serve_local(max_sessions_per_client=2) as srv:
        url = f"{srv.ws}/api/realtime/ws"
        async with websockets.connect(url) as a, websockets.connect(url) as b:
            for ws in (a, b):
                assert '"session.created"' in await ws.recv()
            with pytest.raises(websockets.InvalidStatus) as info:
                async with websockets.connect(url):
                    pass
            assert info.value.response.status_code == 429
            assert b"limit per client is 2" in info.value.response.body
        # Closed sessions give their places back.
        async with websockets.connect(url) as c:
            assert '"session.created"' in await c.recv()
