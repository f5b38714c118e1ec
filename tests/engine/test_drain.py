"""SIGTERM drains a real node process: new sessions refused, running ones finish, the rest closed at the bound, exit 0.

The node is ``python -m parley.bench.fake_engine`` (``parley engine``'s serving
path on fake models) on a loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import websockets

from tests.engine.test_admission import recv, refused_websocket, text_turn
from tests.support.servers import free_port

DRAIN_SECONDS = 3.0


@contextlib.asynccontextmanager
async def node_process(*args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "parley.bench.fake_engine",
        "--port",
        str(port),
        *args,
        env={**os.environ, "PARLEY_VALIDATE_EVENTS": "1"},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    base = f"127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http, asyncio.timeout(30):
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"http://{base}/readyz")).status_code == 200:
                        break
                assert proc.returncode is None, "the node exited during start-up"
                await asyncio.sleep(0.1)
        yield proc, base
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_sigterm_drains_then_exits() -> None:
    async with (
        node_process("--drain-seconds", str(DRAIN_SECONDS), "--max-sessions", "4") as (proc, base),
        httpx.AsyncClient(base_url=f"http://{base}") as http,
    ):
        finishing = await websockets.connect(f"ws://{base}/v1/realtime")
        lingering = await websockets.connect(f"ws://{base}/v1/realtime")
        for ws in (finishing, lingering):
            await recv(ws, "session.created")
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5):
            while (await http.get("/readyz")).status_code != 503:  # noqa: ASYNC110 - polling another process
                await asyncio.sleep(0.02)
        ready: dict[str, Any] = (await http.get("/readyz")).json()
        assert ready["status"] == "draining" and ready["sessions"] == 2
        # New sessions are refused at once, and told to come back (elsewhere).
        error, code, reason = await refused_websocket(f"ws://{base}/v1/realtime")
        assert error["error"]["code"] == "server_draining" and code == 1013, reason
        r = await http.post("/v1/realtime/client_secrets", json={})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        # A running session goes on working, then ends by itself.
        assert "Paris" in await text_turn(finishing)
        await finishing.close()
        # The other outlives the bound: closed with 1001 (going away), so its client reconnects.
        async with asyncio.timeout(DRAIN_SECONDS + 5):
            closed_at = None
            try:
                while True:
                    json.loads(await lingering.recv())
            except websockets.ConnectionClosed as closed:
                closed_at = time.perf_counter() - t0
                assert closed.rcvd is not None and closed.rcvd.code == 1001, closed
        assert closed_at is not None and DRAIN_SECONDS - 0.5 <= closed_at <= DRAIN_SECONDS + 2.5, closed_at
        async with asyncio.timeout(10):
            rc = await proc.wait()
        exited_at = time.perf_counter() - t0
        assert rc == 0, (rc, (await proc.stderr.read()).decode()[-2000:] if proc.stderr else "")
        print(f"drain: lingering session closed at {closed_at:.2f} s, process exited at {exited_at:.2f} s")


async def test_sigterm_with_nothing_open_exits_at_once() -> None:
    async with node_process() as (proc, _base):
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
        assert time.perf_counter() - t0 < 3


async def test_parley_serve_drains_its_relayed_sessions() -> None:
    # `parley serve --upstream <engine>`: SIGTERM refuses new sessions, lets the relayed one finish, exits 0.
    key = "drain-upstream-key"
    async with node_process("--api-key", key) as (_engine, engine_base):
        port = free_port()
        serve = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "parley",
            "serve",
            "--port",
            str(port),
            "--upstream",
            f"http://{engine_base}",
            "--upstream-key",
            key,
            "--drain-seconds",
            "20",
            env={k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        base = f"127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(base_url=f"http://{base}") as http:
                async with asyncio.timeout(30):
                    while True:
                        with contextlib.suppress(httpx.HTTPError):
                            if (await http.get("/readyz")).status_code == 200:
                                break
                        assert serve.returncode is None
                        await asyncio.sleep(0.1)
                relayed = await websockets.connect(f"ws://{base}/api/realtime/ws")
                await recv(relayed, "session.created")
                assert (await http.get("/readyz")).json()["sessions"] == 1
                t0 = time.perf_counter()
                serve.send_signal(signal.SIGTERM)
                async with asyncio.timeout(5):
                    while (await http.get("/readyz")).status_code != 503:  # noqa: ASYNC110 - another process
                        await asyncio.sleep(0.02)
                r = await http.post("/api/session")
                assert r.status_code == 503 and r.json()["error"]["code"] == "server_draining"
                _, code, reason = await refused_websocket(f"ws://{base}/api/realtime/ws")
                assert code == 1013 and reason.startswith("shutting down"), reason
                assert "Paris" in await text_turn(relayed)
                await relayed.close()
            async with asyncio.timeout(10):
                rc = await serve.wait()
            assert rc == 0, (await serve.stderr.read()).decode()[-2000:] if serve.stderr else rc
            assert time.perf_counter() - t0 < 10  # ended with its session, not at the 20 s bound
        finally:
            if serve.returncode is None:
                serve.kill()
            await serve.wait()
