"""The engine process is killed under ``parley serve`` (remote upstream), then comes back.

A real ``parley engine`` process (its serving path on the fake models, so this runs in the
fast tier): the browser-side socket through serve is closed with a reason when the engine
dies, a connection while it is down gets a clear refusal, and once the engine is back on
its port a reconnecting client holds a turn again, with nothing left over in serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets

from tests.server.test_ws_relay import _settled, recv
from tests.support.events import user_message
from tests.support.serve import UPSTREAM_KEY, serve_remote
from tests.support.servers import free_port


@contextlib.contextmanager
def engine_process(port: int) -> Iterator[subprocess.Popen[bytes]]:
    env = dict(os.environ, PARLEY_ENGINE_KEY=UPSTREAM_KEY, PARLEY_SELFCHECK="0")
    proc = subprocess.Popen(
        [sys.executable, "-m", "parley.bench.fake_engine", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            assert proc.poll() is None, "the engine process exited"
            assert time.monotonic() < deadline, "the engine did not come up"
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


async def text_turn(ws: Any) -> dict[str, Any]:
    await ws.send(user_message("Hello?"))
    await ws.send(json.dumps({"type": "response.create", "response": {"output_modalities": ["text"]}}))
    return await recv(ws, "response.done", within=10)


async def test_engine_killed_under_serve_then_back() -> None:
    port = free_port()
    with engine_process(port) as engine:
        async with serve_remote(upstream_url=f"http://127.0.0.1:{port}/v1") as srv:
            url = f"{srv.ws}/api/realtime/ws"
            async with websockets.connect(url) as ws:
                await recv(ws, "session.created")
                assert (await text_turn(ws))["response"]["status"] == "completed"

                engine.send_signal(signal.SIGKILL)
                killed = time.perf_counter()
                with pytest.raises(websockets.ConnectionClosed) as info:
                    async with asyncio.timeout(5):
                        while True:
                            await ws.recv()
                closed_after = time.perf_counter() - killed
            assert info.value.rcvd is not None and info.value.rcvd.reason, info.value
            assert "upstream" in info.value.rcvd.reason, info.value.rcvd.reason
            assert closed_after < 2.0, closed_after
            assert await _settled(srv)

            # While the engine is down: refused at once with 502 (Bad Gateway), not a hang.
            refused = time.perf_counter()
            with pytest.raises(websockets.InvalidStatus) as down:
                await websockets.connect(url, open_timeout=10)
            assert down.value.response.status_code == 502
            assert time.perf_counter() - refused < 2.0

            # The engine comes back on its port: the next connection holds a turn again.
            with engine_process(port):
                async with websockets.connect(url) as ws:
                    await recv(ws, "session.created")
                    assert (await text_turn(ws))["response"]["status"] == "completed"
            assert await _settled(srv)
    print(f"browser socket closed {closed_after * 1000:.0f} ms after the engine was killed")
