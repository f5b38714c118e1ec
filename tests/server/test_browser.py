"""Headless Chromium + the unmodified ``@openai/agents-realtime`` bundle over WebRTC, on loopback.

The fake microphone plays a synthesised question from a WAV; the SDK connects
once through ``parley serve``'s relay (``/api/realtime/calls``) and once
straight to the embedded engine (``/v1/realtime/calls``) with an ``ek_``
secret, and each time a spoken turn completes: the user transcript, the
reply, and decoded reply audio in the browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.staticfiles import StaticFiles

from parley.bench.speech import silence, synthesize, write_wav
from parley.protocol.validation import server_event_classes, validate_server_event
from tests.server.browser import ARTIFACTS, CHROMIUM, chromium_args, sdk_bundle
from tests.support.serve import Serve
from tests.support.text import recall

pytestmark = [pytest.mark.browser, pytest.mark.models]

QUESTION = "What is the capital of France?"
PAGE_DIR = Path(__file__).parent / "browser_page"


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Leading silence: the file starts when getUserMedia opens the device, before the call is up.
    import numpy as np

    pcm = np.concatenate([silence(1.5, 48000), synthesize(QUESTION, rate=48000), silence(1.0, 48000)])
    return write_wav(tmp_path_factory.mktemp("wav") / "question.wav", pcm, 48000)


@pytest.fixture(scope="module")
def site(serve: Serve) -> Serve:
    """The SDK bundle and the test page, served by ``parley serve`` itself (same origin, CSP 'self')."""
    serve.app.mount("/sdk", StaticFiles(directory=sdk_bundle()), name="sdk")
    serve.app.mount("/browser-test", StaticFiles(directory=PAGE_DIR), name="browser-test")
    return serve


@contextlib.asynccontextmanager
async def chromium(wav: Path) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=chromium_args(wav), headless=True)
        try:
            yield browser
        finally:
            await browser.close()


async def wait_js(page: Any, expression: str, within: float) -> None:
    """Poll ``expression`` with page.evaluate: wait_for_function evals in the page, which our CSP forbids."""
    deadline = time.monotonic() + within
    while not await page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{expression!r} still false after {within:.0f} s")
        await asyncio.sleep(0.1)


async def spoken_turn_in_browser(site: Serve, wav: Path, mode: str) -> dict[str, Any]:
    console: list[str] = []
    async with chromium(wav) as browser:
        page = await browser.new_page()
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        try:
            await page.goto(f"{site.http}/browser-test/index.html?mode={mode}")
            await wait_js(page, "window.T && T.state !== 'starting'", 30)
            state = await page.evaluate("({state: T.state, errors: T.errors, callId: T.callId})")
            assert state["state"] == "connected", (state, console[-20:])
            await wait_js(
                page,
                "T.events.some(e => e.type === 'response.done' && e.response.status === 'completed')",
                90,
            )
            await wait_js(
                page,
                "T.events.some(e => e.type === 'conversation.item.input_audio_transcription.completed')",
                30,
            )
            await wait_js(page, "T.events.some(e => e.type === 'output_audio_buffer.stopped')", 30)
            stats = await page.evaluate("collectStats()")
            events = await page.evaluate("T.events")
            errors = await page.evaluate("T.errors")
            await page.evaluate("closeSession()")
            return {"state": state, "stats": stats, "events": events, "errors": errors, "console": console}
        except BaseException:
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / f"browser-{mode}-{int(time.time())}.png"
            with contextlib.suppress(Exception):
                await page.screenshot(path=str(shot))
                (shot.with_suffix(".log")).write_text("\n".join(console))
            raise


def check_turn(result: dict[str, Any]) -> None:
    events = result["events"]
    ARTIFACTS.mkdir(exist_ok=True)
    # Kept for a failure's diagnosis: what was heard and answered, turn by turn.
    (ARTIFACTS / f"browser-events-{result['state'].get('callId')}.json").write_text(
        json.dumps(events, indent=1)
    )
    known = server_event_classes()
    for event in events:
        if event.get("type") in known:
            validate_server_event(event)
    types = [e["type"] for e in events]
    assert types[0] == "session.created", types[:5]
    heard = next(e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed")
    assert recall(QUESTION, heard["transcript"]) >= 0.6, heard["transcript"]
    done = next(e for e in events if e["type"] == "response.done" and e["response"]["status"] == "completed")
    reply = done["response"]["output"][0]["content"][0]["transcript"]
    assert reply.strip()
    assert "output_audio_buffer.started" in types
    stats = result["stats"]
    assert stats["inbound"]["packets"] > 50 and stats["outbound"]["packets"] > 50, stats
    assert stats["inbound"]["energy"] > 0.01, stats  # the reply was decoded in the page
    assert not result["errors"], result["errors"]
    assert not [e for e in events if e["type"] == "error"], [e for e in events if e["type"] == "error"]


async def released(site: Serve, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        rt = site.runtime
        if rt is not None and not rt.calls and not site.app.state.sideband.tasks:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_agents_sdk_webrtc_through_serve_relay(site: Serve, question_wav: Path) -> None:
    result = await spoken_turn_in_browser(site, question_wav, "relay")
    assert str(result["state"]["callId"]).startswith("rtc_")
    check_turn(result)
    assert await released(site), "the call or its sideband outlived the page"


async def test_agents_sdk_webrtc_straight_to_engine(site: Serve, question_wav: Path) -> None:
    result = await spoken_turn_in_browser(site, question_wav, "direct")
    check_turn(result)
    assert await released(site)
