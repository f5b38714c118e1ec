"""A WebSocket client that vanishes mid-response (its TCP connection dropped, no close frame):
the engine ends the session, cancels the reply and frees everything, without an error in its log."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
import websockets

from parley.host.app import create_engine_app
from tests.support.events import user_message
from tests.support.serve import fake_runtime
from tests.support.servers import serve_app


async def test_client_vanishing_mid_response_frees_the_session(caplog: pytest.LogCaptureFixture) -> None:
    runtime = fake_runtime()
    async with serve_app(create_engine_app(runtime)) as srv:
        ws = await websockets.connect(f"{srv.ws}/v1/realtime")
        await ws.send(user_message("Hi"))
        await ws.send(json.dumps({"type": "response.create"}))
        async with asyncio.timeout(5):
            while json.loads(await ws.recv())["type"] != "response.output_audio.delta":
                pass
        (session,) = runtime.sessions.values()
        ws.transport.abort()  # gone: no close frame, no FIN handshake
        async with asyncio.timeout(5):
            while runtime.sessions:  # noqa: ASYNC110 - the runtime has no event for this
                await asyncio.sleep(0.05)
        assert session.closed
        assert all(r.finished for r in session.responses.values())
        assert not [t for t in session._tasks if not t.done()]
        # The server keeps serving others.
        async with websockets.connect(f"{srv.ws}/v1/realtime") as other:
            assert json.loads(await other.recv())["type"] == "session.created"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
