"""The WebSocket surface with fake models: handshake, auth, secrets, limits, sideband refusal."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import websockets
from openai import AsyncOpenAI

from parley.engine.config import EngineConfig
from parley.host.app import create_engine_app
from parley.host.runtime import EngineRuntime
from parley.protocol.validation import validate_server_event
from tests.support.fakes import FakeModels
from tests.support.servers import serve_app


def runtime(**kw) -> EngineRuntime:
    return EngineRuntime(EngineConfig(validate_events=True, **kw), models=FakeModels())  # type: ignore[arg-type]


async def recv(ws, kind: str, timeout: float = 5.0) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            event = json.loads(await ws.recv())
            validate_server_event(event)
            if event["type"] == kind:
                return event


async def test_openai_python_text_turn() -> None:
    async with serve_app(create_engine_app(runtime())) as srv:
        client = AsyncOpenAI(api_key="anything", base_url=f"{srv.http}/v1", websocket_base_url=f"{srv.ws}/v1")
        async with client.realtime.connect(model="gpt-realtime") as conn:
            first = await conn.recv()
            assert first.type == "session.created"
            await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
            await conn.conversation.item.create(
                item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}
            )
            await conn.response.create()
            text = ""
            async for event in conn:
                if event.type == "response.output_text.delta":
                    text += event.delta
                if event.type == "response.done":
                    assert event.response.status == "completed"
                    break
            assert "Paris" in text


async def test_subprotocol_auth_selects_realtime_and_works_without_model() -> None:
    async with serve_app(create_engine_app(runtime(api_key="sk-test"))) as srv:
        async with websockets.connect(
            f"{srv.ws}/v1/realtime",
            subprotocols=["realtime", "openai-insecure-api-key.sk-test", "openai-agents-sdk.0.1"],
        ) as ws:
            assert ws.subprotocol == "realtime"
            created = await recv(ws, "session.created")
            assert created["session"]["model"] == "gpt-realtime"


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer wrong"}, 401), ({"Authorization": "Bearer ek_unknown"}, 401)],
)
async def test_bad_keys_are_refused(headers: dict, status: int) -> None:
    async with serve_app(create_engine_app(runtime(api_key="sk-test"))) as srv:
        with pytest.raises(websockets.InvalidStatus) as info:
            async with websockets.connect(f"{srv.ws}/v1/realtime", additional_headers=headers):
                pass
        assert info.value.response.status_code == status
        body = json.loads(info.value.response.body)
        assert body["error"]["message"]


async def test_client_secret_carries_session_and_expires() -> None:
    rt = runtime(api_key="sk-test")
    async with serve_app(create_engine_app(rt)) as srv:
        async with httpx.AsyncClient(base_url=srv.http) as http:
            r = await http.post(
                "/v1/realtime/client_secrets",
                headers={"Authorization": "Bearer sk-test"},
                json={
                    "expires_after": {"anchor": "created_at", "seconds": 10},
                    "session": {
                        "type": "realtime",
                        "instructions": "Speak like a pirate.",
                        "audio": {"output": {"voice": "cedar"}},
                    },
                },
            )
            assert r.status_code == 200, r.text
            secret = r.json()
            assert secret["value"].startswith("ek_")
            assert secret["session"]["instructions"] == "Speak like a pirate."
            assert "sk-test" not in r.text
            # An ephemeral key cannot mint more keys.
            r2 = await http.post(
                "/v1/realtime/client_secrets", headers={"Authorization": f"Bearer {secret['value']}"}, json={}
            )
            assert r2.status_code == 403
            bad = await http.post(
                "/v1/realtime/client_secrets",
                headers={"Authorization": "Bearer sk-test"},
                json={"expires_after": {"seconds": 3}},
            )
            assert bad.status_code == 400 and bad.json()["error"]["param"] == "expires_after.seconds"
        async with websockets.connect(
            f"{srv.ws}/v1/realtime", additional_headers={"Authorization": f"Bearer {secret['value']}"}
        ) as ws:
            created = await recv(ws, "session.created")
            assert created["session"]["instructions"] == "Speak like a pirate."
            assert created["session"]["audio"]["output"]["voice"] == "cedar"
        # Expiry is enforced on connect.
        assert rt.secrets.get(secret["value"]) is not None
        rt.secrets.clock = lambda: time.time() + 3600
        with pytest.raises(websockets.InvalidStatus) as info:
            async with websockets.connect(
                f"{srv.ws}/v1/realtime", additional_headers={"Authorization": f"Bearer {secret['value']}"}
            ):
                pass
        assert info.value.response.status_code == 401


async def test_session_limit() -> None:
    # Beyond capacity: an error event says why, then 1013 with the wait (more in test_admission.py).
    async with serve_app(create_engine_app(runtime(max_sessions=1))) as srv:
        async with websockets.connect(f"{srv.ws}/v1/realtime") as first:
            await recv(first, "session.created")
            async with websockets.connect(f"{srv.ws}/v1/realtime") as second:
                error = await recv(second, "error")
                assert error["error"]["code"] == "session_limit_reached"
                with pytest.raises(websockets.ConnectionClosed) as info:
                    await second.recv()
                assert info.value.rcvd is not None and info.value.rcvd.code == 1013
                assert info.value.rcvd.reason == "busy, retry in 5 s"


async def test_session_duration_limit_closes_with_error() -> None:
    async with serve_app(create_engine_app(runtime(max_session_seconds=1))) as srv:
        async with websockets.connect(f"{srv.ws}/v1/realtime") as ws:
            error = await recv(ws, "error", timeout=5)
            assert error["error"]["code"] == "session_expired"
            with pytest.raises(websockets.ConnectionClosed):
                async with asyncio.timeout(5):
                    while True:
                        await ws.recv()


async def test_sideband_for_unknown_call_is_404() -> None:
    async with serve_app(create_engine_app(runtime())) as srv:
        with pytest.raises(websockets.InvalidStatus) as info:
            async with websockets.connect(f"{srv.ws}/v1/realtime?call_id=rtc_nope"):
                pass
        assert info.value.response.status_code == 404
