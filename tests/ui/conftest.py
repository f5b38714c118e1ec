"""Fixtures for the browser UI tests: ``parley serve`` on real models, Chromium, pages.

Every page is screenshotted to ``artifacts/ui/<test>.png`` when its test ends
(``…-FAILED.png`` when the test failed), so the page can be looked at.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright

from parley.engine.config import EngineConfig
from parley.host.runtime import EngineRuntime
from tests.support.models import real_models
from tests.support.serve import Serve, serve_local
from tests.support.ui import Browsers, UiPage, speech_wav

QUESTION = "What is the capital of France?"
# The fake microphone starts when the page opens it, before the connection is up: on a
# busy 2-core machine that can take a couple of seconds, so speech starts after this.
LEAD_S = 3.0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def wav_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ui-wavs")


@pytest.fixture(scope="session")
def silent_wav(wav_dir: Path) -> Path:
    return speech_wav(wav_dir / "silence.wav", 30.0)


@pytest.fixture(scope="session")
def question_wav(wav_dir: Path) -> Path:
    """Silence (while the page connects), a question, then silence: one spoken turn."""
    return speech_wav(wav_dir / "question.wav", LEAD_S, QUESTION, 25.0)


@pytest.fixture(scope="session")
async def browsers(silent_wav: Path) -> AsyncIterator[Browsers]:
    async with async_playwright() as pw:
        b = Browsers(pw, silent_wav)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture(scope="session")
async def models() -> Any:
    return await real_models()


@pytest.fixture(scope="session")
async def serve(models: Any) -> AsyncIterator[Serve]:
    """``parley serve`` with the embedded engine on real models, on a free loopback port."""
    runtime = EngineRuntime(EngineConfig(validate_events=True), models=models)
    async with serve_local(runtime) as srv:
        yield srv


OpenPage = Callable[..., Awaitable[UiPage]]


@pytest.fixture
async def open_page(request: pytest.FixtureRequest, browsers: Browsers) -> AsyncIterator[OpenPage]:
    """``await open_page(base_url, wav=…, query=…, viewport=…)`` → a loaded UiPage (closed after the test)."""
    pages: list[tuple[UiPage, Any]] = []

    async def open_(
        base_url: str,
        *,
        wav: Path | None = None,
        query: str = "",
        allow_mic: bool = True,
        has_mic: bool = True,
        viewport: dict[str, int] | None = None,
        storage: dict[str, Any] | None = None,
    ) -> UiPage:
        browser = await browsers.get(wav, allow_mic=allow_mic, has_mic=has_mic)
        context = await browser.new_context(
            viewport=viewport or {"width": 1360, "height": 880}, accept_downloads=True
        )
        if storage:
            import json

            await context.add_init_script(
                "(s => { for (const [k, v] of Object.entries(s)) localStorage.setItem(k, v); })"
                f"({json.dumps({k: json.dumps(v) for k, v in storage.items()})})"
            )
        page = UiPage(await context.new_page(), base_url)
        pages.append((page, context))
        return await page.open(query)

    yield open_

    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for i, (page, context) in enumerate(pages):
        name = request.node.name + (f"-{i}" if i else "") + ("-FAILED" if failed else "")
        try:
            path = await page.screenshot(name)
            if failed:
                print(f"screenshot: {path}\nconsole: {page.dump()}")
        except Exception:
            pass
        await context.close()
