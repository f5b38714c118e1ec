"""Each failure the page can meet shows a clear, actionable message — with real causes:
a browser that denies or lacks a microphone, an upstream that refuses the server's key,
a server that refuses the SDP offer, a call ended by the server, a missing access token.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from tests.support.serve import Serve, fake_runtime, serve_local, serve_remote
from tests.ui.conftest import OpenPage

pytestmark = [pytest.mark.browser]


@pytest.mark.models
async def test_microphone_denied_offers_text_only(serve: Serve, open_page: OpenPage) -> None:
    page = await open_page(serve.http, allow_mic=False)
    await page.page.click("#connect-btn")
    banner = await page.banner()
    assert banner["kind"] == "mic-denied", banner
    assert banner["title"] == "Microphone access is blocked"
    assert "Allow the microphone" in banner["hint"]
    assert banner["actions"] == ["retry", "text-only"]
    assert "Microphone unavailable" in await page.page.inner_text("#status-pill")
    # Text only still works.
    await page.page.click("#banner-actions [data-action=text-only]")
    await page.wait_connected()
    assert await page.page.is_hidden("#banner")
    assert await page.page.is_disabled("#mute-btn")
    await page.send_text("Hello there.")
    await page.wait_reply_done(within=120)


@pytest.mark.models
async def test_no_microphone(serve: Serve, open_page: OpenPage) -> None:
    page = await open_page(serve.http, has_mic=False)
    await page.page.click("#connect-btn")
    banner = await page.banner()
    assert banner["kind"] == "mic-absent", banner
    assert banner["title"] == "No microphone found"
    assert "text-only" in banner["actions"]


@pytest.mark.parametrize("transport", ["webrtc", "websocket"])
async def test_upstream_refuses_the_servers_key(open_page: OpenPage, transport: str) -> None:
    # `parley serve --upstream http://127.0.0.1:PORT --upstream-key wrong` in front of an engine with another key.
    async with serve_remote(key="wrong-key-000", engine_key="the-right-key-111") as srv:
        page = await open_page(srv.http, storage={"parley.settings.v1": {"transport": transport}})
        await page.page.click("#connect-btn")
        banner = await page.banner()
        assert banner["kind"] == "auth", banner
        assert banner["title"] == "The voice service refused the server's credentials"
        assert "OPENAI_API_KEY" in banner["hint"]
        assert banner["message"], banner  # the upstream's own words
        assert "wrong-key-000" not in banner["message"]
        assert "Couldn't connect" in await page.page.inner_text("#status-pill")


async def test_refused_sdp_offer_explains_and_offers_websocket(open_page: OpenPage) -> None:
    # A server whose SDP limit is smaller than any real offer refuses the handshake.
    async with serve_local(fake_runtime(), max_sdp_bytes=200) as srv:
        page = await open_page(srv.http)
        await page.page.click("#connect-btn")
        banner = await page.banner()
        assert banner["kind"] == "handshake", banner
        assert banner["title"] == "Could not set up the audio connection"
        assert "SDP" in banner["message"]
        assert "websocket" in banner["actions"]
        await page.page.click("#banner-actions [data-action=websocket]")
        await page.wait_connected()
        assert "WebSocket" in await page.page.inner_text("#status-pill")


@pytest.mark.models
async def test_connection_lost_then_reconnect(serve: Serve, open_page: OpenPage) -> None:
    page = await open_page(serve.http)
    await page.connect()
    calls = list(serve.runtime.calls.values())
    assert calls
    for call in calls:  # the server ends the call
        await call.close("test")
    banner = await page.banner()
    assert banner["kind"] == "connection-lost", banner
    assert banner["title"] == "Connection lost"
    assert banner["actions"] == ["reconnect"]
    assert "Reconnecting automatically" in banner["hint"]
    assert "Connection lost" in await page.page.inner_text("#status-pill")
    await page.page.click("#banner-actions [data-action=reconnect]")
    await page.wait_connected()
    assert await page.page.is_hidden("#banner")
    assert "New session" in await page.page.inner_text("#transcript .divider")


async def test_access_token_required(open_page: OpenPage) -> None:
    async with serve_local(fake_runtime(), access_token="letmein-123") as srv:
        page = await open_page(srv.http)
        await page.page.click("#connect-btn")
        banner = await page.banner()
        assert banner["kind"] == "access-token", banner
        assert "?token=" in banner["hint"]
        # With the token in the page URL it connects, over both transports.
        page = await open_page(srv.http, query="token=letmein-123")
        await page.connect()
        await page.page.click("#connect-btn")
        await page.choose("transport", "websocket")
        await page.connect()


async def test_cancel_while_connecting_is_quiet(open_page: OpenPage) -> None:
    async with serve_local(fake_runtime()) as srv:
        page = await open_page(srv.http)

        async def slow_answer(route: Any) -> None:  # hold the call in "connecting" for the test
            await asyncio.sleep(3)
            with contextlib.suppress(Exception):  # the page may have given up on it by now
                await route.continue_()

        await page.page.route("**/api/realtime/calls", slow_answer)
        await page.page.click("#connect-btn")
        await page.until(
            "() => document.querySelector('#status-pill').dataset.state === 'connecting'", what="connecting"
        )
        await page.page.click("#connect-btn")  # now "Cancel"
        await page.until("() => document.querySelector('#status-pill').dataset.state === 'idle'", what="idle")
        await page.page.wait_for_timeout(500)
        assert await page.page.is_hidden("#banner")
        assert await page.js("parley.client.mic") is None  # the microphone was released
        await page.page.unroute("**/api/realtime/calls")
        await page.connect()  # and connecting again works


@pytest.mark.parametrize("transport", ["webrtc", "websocket"])
async def test_an_expired_session_starts_a_new_one(open_page: OpenPage, transport: str) -> None:
    # The engine ends the session at its maximum duration (an error, then close 1001 "going away"
    # over WebSocket): the page says so and reconnects by itself, as openai-python does.
    async with serve_local(fake_runtime(max_session_seconds=3)) as srv:
        page = await open_page(srv.http, storage={"parley.settings.v1": {"transport": transport}})
        await page.connect()
        banner = await page.banner()
        assert banner["kind"] == "session-expired", banner
        await page.until("() => parley.sessions === 2", within=15, what="a second session")
        await page.wait_connected()
        assert "New session" in await page.page.inner_text("#transcript .divider")


@pytest.mark.parametrize("transport", ["webrtc", "websocket"])
async def test_busy_server_says_when_to_retry_and_does(open_page: OpenPage, transport: str) -> None:
    # A full engine: /api/session answers 503 + Retry-After (WebRTC); the WebSocket gets an error
    # event and a 1013 close. The page says "busy, retry in n s", counts down, and tries again.
    runtime = fake_runtime(max_sessions=0, retry_after_seconds=2)
    async with serve_local(runtime) as srv:
        page = await open_page(srv.http, storage={"parley.settings.v1": {"transport": transport}})
        await page.page.click("#connect-btn")
        banner = await page.banner()
        assert banner["kind"] == "busy", banner
        assert banner["title"] == "The server is busy"
        assert "retry in 2 s" in banner["message"].lower(), banner
        assert banner["hint"].startswith("Busy, retry in "), banner
        assert "Busy" in await page.page.inner_text("#status-pill")
        runtime.config.max_sessions = 1  # a slot frees up: the countdown's retry gets it
        await page.wait_connected()
        assert await page.page.is_hidden("#banner")
