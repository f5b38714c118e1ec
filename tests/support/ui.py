"""Driving the Parley web page in headless Debian Chromium with a WAV-fed fake microphone.

Chromium flags come from tests/server/browser.py (loopback-only WebRTC, no mDNS,
no name resolution but 127.0.0.1, autoplay allowed). A fake microphone plays
one WAV file per browser launch, from the moment the page opens the device
(`%noloop`), so each different WAV needs its own launch.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from playwright.async_api import Browser, Page, Playwright

from parley.bench.speech import silence, synthesize, write_wav
from tests.server.browser import CHROMIUM, chromium_args

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "ui"


def speech_wav(path: Path, *parts: str | float) -> Path:
    """A 16-bit mono 24 kHz WAV: floats are seconds of silence, strings are spoken by Piper."""
    return speech_timeline(path, *parts)[0]


def speech_timeline(path: Path, *parts: str | float) -> tuple[Path, list[tuple[float, float]]]:
    """Like speech_wav, plus the (start, end) seconds of each spoken part."""
    chunks, spans, t = [], [], 0.0
    for p in parts:
        pcm = silence(p) if isinstance(p, int | float) else synthesize(p)
        if not isinstance(p, int | float):
            spans.append((t, t + len(pcm) / 24000))
        t += len(pcm) / 24000
        chunks.append(pcm)
    return write_wav(path, np.concatenate(chunks)), spans


class Browsers:
    """One Chromium per (WAV, flags) combination, launched on first use."""

    def __init__(self, pw: Playwright, silent_wav: Path) -> None:
        self.pw = pw
        self.silent_wav = silent_wav
        self.launched: dict[tuple[str, bool, bool], Browser] = {}

    async def get(self, wav: Path | None = None, *, allow_mic: bool = True, has_mic: bool = True) -> Browser:
        wav = wav or self.silent_wav
        key = (str(wav), allow_mic, has_mic)
        if key not in self.launched:
            args = chromium_args(wav)
            if not allow_mic:  # no auto-accept: getUserMedia is denied (NotAllowedError)
                args = [a for a in args if a != "--use-fake-ui-for-media-stream"]
            if not has_mic:  # no fake device: there is no microphone at all (NotFoundError)
                args = [
                    a for a in args if not a.startswith(("--use-fake-device", "--use-file-for-fake-audio"))
                ]
            self.launched[key] = await self.pw.chromium.launch(executable_path=CHROMIUM, args=args)
        return self.launched[key]

    async def close(self) -> None:
        for b in self.launched.values():
            with contextlib.suppress(Exception):
                await b.close()


class UiPage:
    """The Parley page, with helpers that read its state through ``window.parley``."""

    def __init__(self, page: Page, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.logs: list[str] = []
        page.on("console", lambda m: self.logs.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.logs.append(f"pageerror: {e}"))

    async def open(self, query: str = "") -> UiPage:
        await self.page.goto(self.base_url + "/" + (f"?{query}" if query else ""))
        await self.page.wait_for_selector("body[data-ready=true]", timeout=15000)
        return self

    # ---------------------------------------------------------------- actions

    async def tab(self, name: str) -> None:
        await self.page.click(f"#tab-{name}")

    async def choose(self, name: str, value: str) -> None:
        """Pick a segmented-control option in Settings (e.g. turn=push_to_talk)."""
        await self.tab("settings")
        await self.page.click(f"label[for='set-{name}-{value}']")

    async def connect(self, within: float = 30) -> None:
        await self.page.click("#connect-btn")
        await self.wait_connected(within)

    async def wait_connected(self, within: float = 30) -> None:
        try:
            await self.page.wait_for_selector("#status-pill[data-state=connected]", timeout=within * 1000)
        except Exception as exc:
            banner = await self.page.inner_text("#banner") if await self.page.is_visible("#banner") else ""
            raise AssertionError(f"did not connect: {banner!r}\n" + "\n".join(self.logs[-20:])) from exc

    async def send_text(self, text: str) -> None:
        await self.page.fill("#composer-input", text)
        await self.page.press("#composer-input", "Enter")

    # ---------------------------------------------------------------- state

    async def js(self, expr: str, arg: Any = None) -> Any:
        return await self.page.evaluate(expr, arg)

    async def until(self, predicate: str, arg: Any = None, within: float = 30, what: str = "") -> Any:
        try:
            handle = await self.page.wait_for_function(predicate, arg=arg, timeout=within * 1000, polling=100)
            return await handle.json_value()
        except Exception as exc:
            raise AssertionError(
                f"timed out waiting for {what or predicate}\n" + "\n".join(self.logs[-20:])
            ) from exc

    async def events(self, type_: str | None = None, direction: str | None = None) -> list[dict[str, Any]]:
        """Every event the page logged (audio events only when its debug switch was on)."""
        return await self.js(
            """([t, d]) => parley.events.records
                 .filter(r => (!t || r.type === t) && (!d || r.dir === d))
                 .map(r => ({...r.event, _t: r.t, _dir: r.dir}))""",
            [type_, direction],
        )

    async def wait_event(self, type_: str, within: float = 30, after: float = 0.0) -> dict[str, Any]:
        return await self.until(
            "([t, after]) => parley.events.records.find(r => r.type === t && r.t > after)?.event",
            [type_, after],
            within=within,
            what=type_,
        )

    async def now(self) -> float:
        return await self.js("performance.now()")

    async def stats(self) -> dict[str, Any]:
        return await self.js("parley.client.stats()")

    async def wait_reply_done(self, within: float = 60, after_turns: int = 0) -> dict[str, Any]:
        """The first completed (or cut) turn after ``after_turns`` with audio heard."""
        return await self.until(
            """(n) => {
                 const t = parley.turns.turns.slice(n).find(t => t.firstAudioAt !== null &&
                     ['done', 'interrupted', 'cancelled'].includes(t.status));
                 return t ? {index: t.index, latencyMs: t.latencyMs, responseId: t.responseId, status: t.status,
                             approx: t.approx, stages: t.stages, bargeInMs: t.bargeInMs} : null;
               }""",
            after_turns,
            within=within,
            what="a finished reply with audio",
        )

    async def bubbles(self) -> list[dict[str, Any]]:
        return await self.js(
            """() => [...document.querySelectorAll('#transcript .msg')].map(m => ({
                 role: m.classList.contains('user') ? 'user' : 'assistant',
                 text: m.querySelector('.bubble').innerText,
                 cut: m.querySelector('.cut')?.innerText || '',
                 meta: m.querySelector('.meta')?.innerText || '',
                 id: m.dataset.id}))"""
        )

    async def banner(self) -> dict[str, str]:
        await self.page.wait_for_selector("#banner:not([hidden])", timeout=30000)
        return await self.js(
            """() => ({kind: document.querySelector('#banner').dataset.kind,
                       title: document.querySelector('#banner-title').innerText,
                       message: document.querySelector('#banner-message').innerText,
                       hint: document.querySelector('#banner-hint').innerText,
                       actions: [...document.querySelectorAll('#banner-actions button')].map(b => b.dataset.action)})"""
        )

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{safe(name)}.png"
        await self.page.screenshot(path=str(path), full_page=False)
        return path

    def dump(self) -> str:
        return json.dumps(self.logs[-40:], indent=1)


def safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:120]
