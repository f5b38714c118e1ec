"""Admission control over real sockets: a session beyond capacity is refused at once, with the wait.

HTTP routes answer 503 + ``Retry-After`` with the OpenAI error body; a
WebSocket completes its handshake, gets an ``error`` event and closes 1013
with ``busy, retry in N s``; ``parley serve`` passes the same on (embedded
engine or a remote one). The admitted session is not disturbed, and refusing
is measured: p50/p95 in the test log (target ≤ 50 ms).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import httpx
import pytest
import websockets
from openai import AsyncOpenAI, InternalServerError

from parley.host.admission import retry_after_from_reason
from parley.host.agent import agent_line, start_agent
from parley.host.app import create_engine_app
from parley.protocol.validation import validate_server_event
from tests.support.events import user_message
from tests.support.serve import UPSTREAM_KEY, fake_runtime, serve_local, serve_remote
from tests.support.servers import free_port, serve_app
from tests.webrtc.conftest import browser_like_offer

log = logging.getLogger(__name__)

SDP = {"Content-Type": "application/sdp"}


async def recv(ws: Any, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            event = json.loads(await ws.recv())
            validate_server_event(event)
            if event["type"] == kind:
                return event


async def refused_websocket(
    url: str, headers: dict[str, str] | None = None
) -> tuple[dict[str, Any], int, str]:
    """Connect, read the refusal: (error event, close code, close reason)."""
    async with websockets.connect(url, additional_headers=headers or {}) as ws:
        error = await recv(ws, "error")
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
    assert info.value.rcvd is not None, "the server should close with a code"
    return error, info.value.rcvd.code, info.value.rcvd.reason


def check_busy(r: httpx.Response, code: str = "session_limit_reached", retry_after: str = "5") -> str:
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == retry_after
    error = r.json()["error"]
    assert error["code"] == code and error["type"] == "server_error", error
    assert f"retry in {retry_after} s" in error["message"].lower(), error
    return str(error["message"])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def text_turn(ws: Any) -> str:
    await ws.send(
        json.dumps({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
    )
    await ws.send(user_message("Hi"))
    await ws.send(json.dumps({"type": "response.create"}))
    done = await recv(ws, "response.done", timeout=10)
    assert done["response"]["status"] == "completed"
    return str(done["response"]["output"][0]["content"][0]["text"])


async def test_engine_refuses_beyond_capacity_on_every_route() -> None:
    runtime = fake_runtime(max_sessions=1)
    async with serve_app(create_engine_app(runtime)) as srv, httpx.AsyncClient(base_url=srv.http) as http:
        r = await http.get("/readyz")
        assert r.status_code == 200 and r.json()["status"] == "ready" and r.json()["free"] == 1
        async with websockets.connect(f"{srv.ws}/v1/realtime") as admitted:
            await recv(admitted, "session.created")
            ready = (await http.get("/readyz")).json()
            assert ready["status"] == "full" and ready["sessions"] == 1 and ready["capacity"] == 1
            # WebSocket: an error event saying why, then 1013 with the wait in the reason.
            error, code, reason = await refused_websocket(f"{srv.ws}/v1/realtime")
            assert error["error"]["code"] == "session_limit_reached"
            assert "retry in 5 s" in error["error"]["message"].lower()
            assert code == 1013 and reason == "busy, retry in 5 s"
            assert retry_after_from_reason(reason) == 5
            # HTTP: 503 + Retry-After, for minting and for WebRTC offers.
            check_busy(await http.post("/v1/realtime/client_secrets", json={}))
            check_busy(await http.post("/v1/realtime/calls", content=await browser_like_offer(), headers=SDP))
            # openai-python sees a 503 (it retries those by itself, honouring Retry-After).
            client = AsyncOpenAI(api_key="local", base_url=f"{srv.http}/v1", max_retries=0)
            with pytest.raises(InternalServerError) as info:
                await client.realtime.client_secrets.create()
            assert info.value.status_code == 503
            # The admitted session never noticed.
            assert "Paris" in await text_turn(admitted)
        assert runtime.sessions == {}


async def test_admitted_session_is_undisturbed_by_a_burst_of_refusals() -> None:
    runtime = fake_runtime(max_sessions=1)
    async with serve_app(create_engine_app(runtime)) as srv, httpx.AsyncClient(base_url=srv.http) as http:
        async with websockets.connect(f"{srv.ws}/v1/realtime") as admitted:
            await recv(admitted, "session.created")

            async def refuse_one(i: int) -> None:
                if i % 2:
                    check_busy(await http.post("/v1/realtime/client_secrets", json={}))
                else:
                    _, code, _ = await refused_websocket(f"{srv.ws}/v1/realtime")
                    assert code == 1013

            burst = asyncio.gather(*(refuse_one(i) for i in range(40)))
            turns = [await text_turn(admitted) for _ in range(3)]
            await burst
            assert all("Paris" in t for t in turns)
            assert len(runtime.sessions) == 1


async def test_refusal_latency() -> None:
    """How long a refused client waits for its answer, per route (fresh connection each time)."""
    runtime = fake_runtime(max_sessions=1)
    offer = await browser_like_offer()
    samples: dict[str, list[float]] = {"websocket": [], "client_secrets": [], "calls": []}
    async with serve_app(create_engine_app(runtime)) as srv:
        async with websockets.connect(f"{srv.ws}/v1/realtime") as admitted:
            await recv(admitted, "session.created")
            for _ in range(30):
                t0 = time.perf_counter()
                _, code, _ = await refused_websocket(f"{srv.ws}/v1/realtime")
                samples["websocket"].append((time.perf_counter() - t0) * 1000)
                assert code == 1013
                for route, kwargs in (
                    ("client_secrets", {"json": {}}),
                    ("calls", {"content": offer, "headers": SDP}),
                ):
                    async with httpx.AsyncClient(base_url=srv.http) as http:  # a new connection each time
                        t0 = time.perf_counter()
                        r = await http.post(f"/v1/realtime/{route}", **kwargs)  # type: ignore[arg-type]
                        samples[route].append((time.perf_counter() - t0) * 1000)
                    assert r.status_code == 503
    figures = {
        route: {"p50_ms": round(percentile(v, 0.5), 1), "p95_ms": round(percentile(v, 0.95), 1), "n": len(v)}
        for route, v in samples.items()
    }
    log.warning("refusal latency at capacity (target <= 50 ms): %s", json.dumps(figures))
    print(f"refusal latency at capacity: {json.dumps(figures)}")
    for route, f in figures.items():
        # The target is 50 ms; the machine is shared, so the test only fails well beyond it.
        assert f["p50_ms"] <= 50, (route, f)
        assert f["p95_ms"] <= 150, (route, f)


async def test_draining_engine_refuses_and_reports_it() -> None:
    runtime = fake_runtime(max_sessions=4)
    port = free_port()
    agent = await start_agent("127.0.0.1", port, runtime.load)

    async def agent_says() -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        line = (await reader.readline()).decode()
        writer.close()
        return line

    try:
        async with serve_app(create_engine_app(runtime)) as srv, httpx.AsyncClient(base_url=srv.http) as http:
            assert await agent_says() == "ready up 100%\n"
            async with websockets.connect(f"{srv.ws}/v1/realtime") as admitted:
                await recv(admitted, "session.created")
                assert await agent_says() == "ready up 75%\n"
                runtime.draining = True
                r = await http.get("/readyz")
                assert r.status_code == 503 and r.json()["status"] == "draining"
                assert await agent_says() == "drain\n"
                error, code, reason = await refused_websocket(f"{srv.ws}/v1/realtime")
                assert error["error"]["code"] == "server_draining"
                assert code == 1013 and reason == "shutting down, retry in 1 s"
                check_busy(await http.post("/v1/realtime/client_secrets", json={}), "server_draining", "1")
                # The session it has goes on.
                assert "Paris" in await text_turn(admitted)
    finally:
        agent.close()
        await agent.wait_closed()
    assert agent_line({"status": "full", "capacity": 4, "free": 0}) == "ready up 1%\n"
    assert agent_line({"status": "loading"}) == "drain\n"


async def test_serve_passes_busy_on_with_the_embedded_engine() -> None:
    async with serve_local(fake_runtime(max_sessions=1)) as srv, httpx.AsyncClient(base_url=srv.http) as http:
        secret = (await http.post("/api/session")).json()["value"]  # minted while there was room
        async with websockets.connect(f"{srv.ws}/api/realtime/ws") as admitted:
            await recv(admitted, "session.created")
            message = check_busy(await http.post("/api/session"))
            assert message.startswith("Busy, retry in 5 s")
            check_busy(
                await http.post(
                    "/api/realtime/calls",
                    content=await browser_like_offer(),
                    headers={**SDP, "Authorization": f"Bearer {secret}"},
                )
            )
            error, code, reason = await refused_websocket(f"{srv.ws}/api/realtime/ws")
            assert error["error"]["code"] == "session_limit_reached"
            assert code == 1013 and reason == "busy, retry in 5 s"


async def test_serve_passes_busy_on_from_a_remote_engine() -> None:
    # `parley serve --upstream http://engine` in front of a full engine: the engine's 503 and 1013 come through.
    engine = fake_runtime(max_sessions=1, api_key=UPSTREAM_KEY)
    async with serve_remote(engine) as srv, httpx.AsyncClient(base_url=srv.http) as http:
        secret = (await http.post("/api/session")).json()["value"]
        assert srv.engine is not None
        async with websockets.connect(
            f"{srv.engine.ws}/v1/realtime", additional_headers={"Authorization": f"Bearer {UPSTREAM_KEY}"}
        ) as admitted:
            await recv(admitted, "session.created")
            message = check_busy(await http.post("/api/session"))
            assert "retry in 5 s" in message.lower()
            check_busy(
                await http.post(
                    "/api/realtime/calls",
                    content=await browser_like_offer(),
                    headers={**SDP, "Authorization": f"Bearer {secret}"},
                )
            )
            error, code, reason = await refused_websocket(f"{srv.ws}/api/realtime/ws")
            assert error["error"]["code"] == "session_limit_reached"
            assert code == 1013 and retry_after_from_reason(reason) == 5, reason
