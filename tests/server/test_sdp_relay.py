"""``POST /api/realtime/calls``: the SDP relay, its bad-input table, and server tools over sideband (fake models)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from parley.server.sdp_relay import CallError, check_offer
from tests.server.rtc_client import RtcClient
from tests.support.serve import Serve, serve_local, serve_remote
from tests.support.servers import serve_app


async def mint(http: httpx.AsyncClient, session: dict | None = None) -> str:
    r = await http.post("/api/session", json={"session": session or {}})
    assert r.status_code == 200, r.text
    return r.json()["value"]


async def ended(srv: Serve, within: float = 10.0) -> bool:
    """The call, its sideband and its session are all gone."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        rt = srv.runtime
        if not srv.app.state.sideband.tasks and rt is not None and not rt.calls and not rt.sessions:
            return True
        await asyncio.sleep(0.05)
    return False


async def tool_call_over_webrtc(srv: Serve) -> None:
    async with httpx.AsyncClient(base_url=srv.http) as http:
        secret = await mint(http, {"output_modalities": ["text"]})
    client = RtcClient()
    try:
        r = await client.connect(f"{srv.http}/api/realtime/calls", secret)
        assert r.status_code == 201, r.text
        assert r.headers["content-type"].startswith("application/sdp")
        assert client.location is not None and client.location.startswith("/api/realtime/calls/rtc_")
        created = await client.events.wait_for("session.created")
        assert "get_current_time" in {t["name"] for t in created["session"]["tools"]}
        assert client.call_id in srv.app.state.sideband.tasks
        # A page that replaces the tools (as agent SDKs do) gets the server's back, by sideband.
        client.send({"type": "session.update", "session": {"type": "realtime", "tools": []}})
        await client.events.wait_for(
            "session.updated",
            lambda e: any(t["name"] == "add_note" for t in e["session"]["tools"]),
            timeout=5,
        )
        client.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Remember to buy milk."}],
                },
            }
        )
        client.send(
            {
                "type": "response.create",
                "response": {"tool_choice": {"type": "function", "name": "list_notes"}},
            }
        )
        call = await client.events.wait_for(
            "response.output_item.done", lambda e: e["item"]["type"] == "function_call", timeout=10
        )
        assert call["item"]["name"] == "list_notes"
        output = await client.events.wait_for(
            "conversation.item.done", lambda e: e["item"]["type"] == "function_call_output", timeout=10
        )
        assert output["item"]["call_id"] == call["item"]["call_id"]
        assert json.loads(output["item"]["output"]) == {"notes": [], "count": 0}
        dones = [e for e in client.events.of("response.done")]
        await client.events.wait_for(
            "response.done", lambda e: e["response"]["id"] != dones[0]["response"]["id"], timeout=10
        )
        assert not client.events.of("error"), client.events.of("error")
    finally:
        await client.close()
    assert await ended(srv), "the call, sideband or session outlived the peer"


async def test_tool_call_over_webrtc_through_local_serve() -> None:
    async with serve_local() as srv:
        await tool_call_over_webrtc(srv)


async def test_tool_call_over_webrtc_through_remote_upstream() -> None:
    async with serve_remote() as srv:
        await tool_call_over_webrtc(srv)


GOOD_OFFER_HEAD = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"


def test_offer_checks() -> None:
    for raw, code in [
        (b"", "invalid_sdp"),
        (b"hello", "invalid_sdp"),
        (b"\xff\xfe\x00", "invalid_sdp"),
        ((GOOD_OFFER_HEAD + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n").encode(), "sdp_no_audio"),
        (b"v=0\r\n" + b"a=x\r\n" * 10000, "sdp_too_large"),
    ]:
        with pytest.raises(CallError) as info:
            check_offer(raw, 32 * 1024)
        assert info.value.code == code
    assert check_offer((GOOD_OFFER_HEAD + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n").encode(), 32 * 1024)


async def test_calls_bad_input_table() -> None:
    async with serve_local() as srv, httpx.AsyncClient(base_url=srv.http) as http:
        secret = await mint(http)
        assert srv.runtime is not None
        srv.runtime.secrets.clock = lambda: time.time() - 3600  # minted an hour ago: long expired
        expired = await mint(http)
        srv.runtime.secrets.clock = time.time
        peer = RtcClient()
        offer = await peer.offer()
        await peer.close()
        no_audio = GOOD_OFFER_HEAD + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
        sdp = {"Content-Type": "application/sdp"}
        cases = [
            # (name, headers, body, status, code)
            ("no auth", sdp, offer, 401, "missing_api_key"),
            (
                "not an ek_ secret",
                {**sdp, "Authorization": "Bearer sk-whatever"},
                offer,
                401,
                "invalid_api_key",
            ),
            ("unknown secret", {**sdp, "Authorization": "Bearer ek_nope"}, offer, 401, "invalid_api_key"),
            ("expired secret", {**sdp, "Authorization": f"Bearer {expired}"}, offer, 401, "invalid_api_key"),
            (
                "json body",
                {"Content-Type": "application/json", "Authorization": f"Bearer {secret}"},
                "{}",
                415,
                "unsupported_media_type",
            ),
            ("empty", {**sdp, "Authorization": f"Bearer {secret}"}, "", 400, "invalid_sdp"),
            ("garbage", {**sdp, "Authorization": f"Bearer {secret}"}, "not sdp at all", 400, "invalid_sdp"),
            ("no audio", {**sdp, "Authorization": f"Bearer {secret}"}, no_audio, 400, "sdp_no_audio"),
            (
                "oversized",
                {**sdp, "Authorization": f"Bearer {secret}"},
                offer + "a=x\r\n" * 10000,
                413,
                "sdp_too_large",
            ),
        ]
        for name, headers, body, status, code in cases:
            r = await http.post("/api/realtime/calls", content=body, headers=headers)
            assert r.status_code == status, (name, r.text)
            error = r.json()["error"]
            assert error["code"] == code and error["message"], (name, error)
        assert not srv.runtime.calls and not srv.app.state.sideband.tasks


async def test_upstream_odd_answers_become_clear_errors() -> None:
    """A JSON answer, an HTML error page, a 2xx that is not SDP: the page always gets a message."""
    odd = FastAPI()

    @odd.post("/v1/realtime/calls")
    async def calls(request: Request) -> Response:
        sdp = (await request.body()).decode()
        if "a=x-case:json-error" in sdp:
            return JSONResponse({"error": {"message": "Too many calls right now.", "code": "busy"}}, 429)
        if "a=x-case:json-200" in sdp:
            return JSONResponse(
                {"error": {"message": "Session config rejected.", "code": "bad_session"}}, 200
            )
        if "a=x-case:html-500" in sdp:
            return HTMLResponse("<html>Internal Server Error</html>", 500)
        return Response(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n",
            201,
            media_type="application/sdp",
            headers={"Location": "/v1/realtime/calls/rtc_fake"},
        )

    async with (
        serve_app(odd) as upstream,
        serve_remote(upstream_url=f"{upstream.http}/v1") as srv,
        httpx.AsyncClient(base_url=srv.http) as http,
    ):
        headers = {"Content-Type": "application/sdp", "Authorization": "Bearer ek_whatever"}
        base = GOOD_OFFER_HEAD + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        for case, status, message in [
            ("json-error", 429, "Too many calls right now."),
            ("json-200", 502, "Session config rejected."),
            ("html-500", 502, "The upstream answered HTTP 500."),
        ]:
            r = await http.post("/api/realtime/calls", content=base + f"a=x-case:{case}\r\n", headers=headers)
            assert r.status_code == status, (case, r.text)
            assert r.json()["error"]["message"] == message
        ok = await http.post("/api/realtime/calls", content=base, headers=headers)
        assert ok.status_code == 201 and ok.headers["location"] == "/api/realtime/calls/rtc_fake"
        assert ok.text.startswith("v=0")
