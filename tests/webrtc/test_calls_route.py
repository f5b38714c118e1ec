"""``POST /v1/realtime/calls`` as HTTP: request forms, bad input, auth, CORS, unconnected peers.

Fake models; no media flows here except where a call must be shown to end.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from parley.host.transports.webrtc import WebRTCOptions, calls_router
from tests.support.servers import serve_app
from tests.webrtc.conftest import browser_like_offer, engine, fake_runtime, released

KEY = "sk-engine-test"


def auth(token: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def check_error(r: httpx.Response, status: int, code: str | None, param: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and error["type"]
    assert error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error
    return error


async def test_answer_and_location_then_unconnected_peer_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_WEBRTC_CONNECT_TIMEOUT", "1")
    offer = await browser_like_offer()
    async with engine(api_key=KEY) as srv, httpx.AsyncClient(base_url=srv.http) as http:
        r = await http.post(
            "/v1/realtime/calls", content=offer, headers={**auth(), "Content-Type": "application/sdp"}
        )
        assert r.status_code == 201, r.text
        assert r.headers["content-type"].startswith("application/sdp")
        location = r.headers["location"]
        assert location.startswith("/v1/realtime/calls/rtc_")
        call_id = location.rsplit("/", 1)[-1]
        answer = r.text
        assert answer.startswith("v=0")
        assert "opus/48000/2" in answer
        assert "a=msid:" in answer  # browsers play event.streams[0]
        assert "a=sendrecv" in answer
        assert "webrtc-datachannel" in answer
        assert " 127.0.0.1 " in answer  # a loopback host candidate, for same-host and netns peers
        assert "stun" not in answer.lower() and "typ srflx" not in answer
        assert call_id in srv.runtime.calls
        # The offerer never does ICE: the call is released after the connect timeout.
        await released(srv.runtime, within=4)


async def test_multipart_form_with_session_and_metrics_flag() -> None:
    offer = await browser_like_offer()
    async with engine(api_key=KEY) as srv, httpx.AsyncClient(base_url=srv.http) as http:
        session = {
            "type": "realtime",
            "model": "gpt-realtime",
            "instructions": "Be a pirate.",
            "audio": {"output": {"voice": "cedar"}},
        }
        r = await http.post(
            "/v1/realtime/calls",
            headers={**auth(), "Accept": "application/sdp"},
            files={
                "sdp": (None, offer, "application/sdp"),
                "session": (None, json.dumps(session), "application/json"),
                "parley_metrics": (None, "1"),
            },
        )
        assert r.status_code == 201, r.text
        call = srv.runtime.calls[r.headers["location"].rsplit("/", 1)[-1]]
        assert call.session.session["instructions"] == "Be a pirate."
        assert call.session.session["audio"]["output"]["voice"] == "cedar"
        assert call.sink.extensions is True
        await call.close()
        # Plain SDP from a browser: no metrics unless asked for in the URL.
        r = await http.post(
            "/v1/realtime/calls?parley_metrics=1",
            content=offer,
            headers={**auth(), "Content-Type": "application/sdp"},
        )
        call = srv.runtime.calls[r.headers["location"].rsplit("/", 1)[-1]]
        assert call.sink.extensions is True
        await call.close()
        r = await http.post(
            "/v1/realtime/calls", content=offer, headers={**auth(), "Content-Type": "application/sdp"}
        )
        call = srv.runtime.calls[r.headers["location"].rsplit("/", 1)[-1]]
        assert call.sink.extensions is False
        await call.close()
        await released(srv.runtime)


async def test_ephemeral_key_session_applies_and_expires() -> None:
    offer = await browser_like_offer()
    async with engine(api_key=KEY) as srv, httpx.AsyncClient(base_url=srv.http) as http:
        r = await http.post(
            "/v1/realtime/client_secrets",
            headers=auth(),
            json={
                "session": {
                    "type": "realtime",
                    "instructions": "Speak softly.",
                    "audio": {"input": {"transcription": {"model": "whisper-1"}}},
                }
            },
        )
        secret = r.json()["value"]
        r = await http.post(
            "/v1/realtime/calls", content=offer, headers={**auth(secret), "Content-Type": "application/sdp"}
        )
        assert r.status_code == 201, r.text
        call = srv.runtime.calls[r.headers["location"].rsplit("/", 1)[-1]]
        assert call.session.session["instructions"] == "Speak softly."
        assert call.session.session["audio"]["input"]["transcription"] == {"model": "whisper-1"}
        await call.close()
        assert srv.runtime.secrets.get(secret) is not None
        srv.runtime.secrets.clock = lambda: time.time() + 3600  # an hour later: expired
        r = await http.post(
            "/v1/realtime/calls", content=offer, headers={**auth(secret), "Content-Type": "application/sdp"}
        )
        check_error(r, 401, "invalid_api_key")
        await released(srv.runtime)


def _only_codec(sdp: str, codec: str) -> str:
    """The offer with its audio m-line reduced to one made-up codec."""
    out = []
    for line in sdp.splitlines():
        if line.startswith("m=audio"):
            out.append(" ".join([*line.split()[:3], "96"]))
            out.append(f"a=rtpmap:96 {codec}")
        elif not line.startswith(("a=rtpmap", "a=fmtp", "a=rtcp-fb")):
            out.append(line)
    return "\r\n".join(out) + "\r\n"


def _without(sdp: str, prefix: str) -> str:
    return "\r\n".join(line for line in sdp.splitlines() if not line.startswith(prefix)) + "\r\n"


async def test_bad_requests_table() -> None:
    offer = await browser_like_offer()
    no_audio = await browser_like_offer(audio=False)
    sdp = {"Content-Type": "application/sdp"}
    # (name, request kwargs, status, code, param)
    cases: list[tuple[str, dict[str, Any], int, str | None, str | None]] = [
        (
            "garbage",
            {"content": b"hello, this is not SDP", "headers": {**auth(), **sdp}},
            400,
            "invalid_offer",
            "sdp",
        ),
        ("empty body", {"content": b"", "headers": {**auth(), **sdp}}, 400, "invalid_offer", "sdp"),
        ("no audio m-line", {"content": no_audio, "headers": {**auth(), **sdp}}, 400, "invalid_offer", "sdp"),
        (
            "not UTF-8",
            {"content": b"v=0\r\n\xff\xfe\xfd", "headers": {**auth(), **sdp}},
            400,
            "invalid_offer",
            None,
        ),
        (
            "oversized",
            {
                "content": b"v=0\r\n" + b"a=x-padding:" + b"x" * 300_000 + b"\r\n",
                "headers": {**auth(), **sdp},
            },
            413,
            "request_too_large",
            None,
        ),
        (
            "no ICE credentials",
            {"content": _without(offer, "a=ice-ufrag"), "headers": {**auth(), **sdp}},
            400,
            "invalid_offer",
            "sdp",
        ),
        (
            "no common codec",
            {"content": _only_codec(offer, "foo/8000"), "headers": {**auth(), **sdp}},
            400,
            "invalid_offer",
            "sdp",
        ),
        (
            "no DTLS fingerprint",
            {"content": _without(offer, "a=fingerprint"), "headers": {**auth(), **sdp}},
            400,
            "invalid_offer",
            "sdp",
        ),
        ("JSON body", {"json": {"sdp": offer}, "headers": auth()}, 415, "unsupported_media_type", None),
        (
            "multipart without sdp",
            {"files": {"session": (None, '{"type":"realtime"}', "application/json")}, "headers": auth()},
            400,
            "missing_required_parameter",
            "sdp",
        ),
        (
            "multipart session not JSON",
            {
                "files": {
                    "sdp": (None, offer, "application/sdp"),
                    "session": (None, "{nope", "application/json"),
                },
                "headers": auth(),
            },
            400,
            "invalid_json",
            "session",
        ),
        (
            "multipart session invalid",
            {
                "files": {
                    "sdp": (None, offer, "application/sdp"),
                    "session": (
                        None,
                        json.dumps({"type": "realtime", "audio": {"output": {"speed": 9}}}),
                        "application/json",
                    ),
                },
                "headers": auth(),
            },
            400,
            "invalid_value",
            "session.audio.output.speed",
        ),
        ("no key", {"content": offer, "headers": sdp}, 401, "missing_api_key", None),
        (
            "wrong key",
            {"content": offer, "headers": {**auth("sk-wrong"), **sdp}},
            401,
            "invalid_api_key",
            None,
        ),
        (
            "unknown ek_",
            {"content": offer, "headers": {**auth("ek_unknown"), **sdp}},
            401,
            "invalid_api_key",
            None,
        ),
    ]
    async with engine(api_key=KEY) as srv, httpx.AsyncClient(base_url=srv.http) as http:
        failures = []
        for name, kwargs, status, code, param in cases:
            r = await http.post("/v1/realtime/calls", **kwargs)
            try:
                error = check_error(r, status, code, param)
            except AssertionError as exc:
                failures.append((name, str(exc)))
                continue
            if name == "no audio m-line":
                assert "audio" in error["message"]
        assert failures == []
        await released(srv.runtime, within=2)


async def test_capacity_and_loading() -> None:
    offer = await browser_like_offer()
    headers = {"Content-Type": "application/sdp"}
    async with engine(max_sessions=1) as srv, httpx.AsyncClient(base_url=srv.http) as http:
        first = await http.post("/v1/realtime/calls", content=offer, headers=headers)
        assert first.status_code == 201
        busy = await http.post("/v1/realtime/calls", content=offer, headers=headers)
        check_error(busy, 503, "session_limit_reached")
        assert busy.headers["retry-after"] == "5"
        await srv.runtime.calls[first.headers["location"].rsplit("/", 1)[-1]].close()
        await released(srv.runtime)
        srv.runtime.models = None  # as while the engine is still loading
        check_error(
            await http.post("/v1/realtime/calls", content=offer, headers=headers), 503, "engine_loading"
        )


async def test_cors_preflight_and_exposed_location() -> None:
    offer = await browser_like_offer()
    origin = {"Origin": "http://localhost:5173"}
    async with engine() as srv, httpx.AsyncClient(base_url=srv.http) as http:
        pre = await http.options(
            "/v1/realtime/calls",
            headers={
                **origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type,x-openai-agents-sdk",
            },
        )
        assert pre.status_code in (200, 204)
        allowed = pre.headers["access-control-allow-headers"].lower()
        assert {"authorization", "content-type", "x-openai-agents-sdk"} <= {
            h.strip() for h in allowed.split(",")
        }
        assert "POST" in pre.headers["access-control-allow-methods"]
        r = await http.post(
            "/v1/realtime/calls", content=offer, headers={**origin, "Content-Type": "application/sdp"}
        )
        assert r.status_code == 201
        assert "location" in r.headers["access-control-expose-headers"].lower()
        assert r.headers["access-control-allow-origin"] in ("*", origin["Origin"])
        await srv.runtime.calls[r.headers["location"].rsplit("/", 1)[-1]].close()

    # Mounted without the engine app's CORS middleware (e.g. inside another app).
    rt = fake_runtime()
    app = FastAPI()
    app.include_router(calls_router(rt, WebRTCOptions()))
    async with serve_app(app) as srv, httpx.AsyncClient(base_url=srv.http) as http:
        pre = await http.options(
            "/v1/realtime/calls", headers={**origin, "Access-Control-Request-Method": "POST"}
        )
        assert pre.status_code == 204
        assert "authorization" in pre.headers["access-control-allow-headers"].lower()
        r = await http.post(
            "/v1/realtime/calls", content=offer, headers={**origin, "Content-Type": "application/sdp"}
        )
        assert r.status_code == 201
        assert r.headers["access-control-expose-headers"] == "Location"
        for call in list(rt.calls.values()):
            await call.close()
    await asyncio.sleep(0)
    await released(rt)


async def test_openai_python_calls_create_multipart() -> None:
    """openai-python's own ``client.realtime.calls.create(sdp=…, session=…)`` (the unified form)."""
    from openai import AsyncOpenAI

    offer = await browser_like_offer()
    async with engine(api_key=KEY) as srv:
        client = AsyncOpenAI(api_key=KEY, base_url=f"{srv.http}/v1")
        answer = await client.realtime.calls.create(
            sdp=offer,
            session={
                "type": "realtime",
                "model": "gpt-realtime",
                "instructions": "Keep it short.",
                "audio": {"input": {"turn_detection": {"type": "semantic_vad"}}},
            },
        )
        assert answer.response.status_code == 201
        assert answer.text.startswith("v=0") and "a=msid:" in answer.text
        call_id = answer.response.headers["location"].rsplit("/", 1)[-1]
        session = srv.runtime.calls[call_id].session.session
        assert session["instructions"] == "Keep it short."
        assert session["audio"]["input"]["turn_detection"]["type"] == "semantic_vad"
        await srv.runtime.calls[call_id].close()
        await released(srv.runtime)


def test_ice_server_urls() -> None:
    from parley.media.ice import ice_servers

    stun, turn = ice_servers(
        ["stun:stun.example.org:3478", "turn:alice:s3cret@turn.example.org:3478?transport=udp"]
    )
    assert stun.urls == "stun:stun.example.org:3478" and stun.username is None
    assert turn.urls == "turn:turn.example.org:3478?transport=udp"
    assert (turn.username, turn.credential) == ("alice", "s3cret")
    assert ice_servers([]) == []
