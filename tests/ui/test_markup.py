"""Markup in anything the page shows is text: no element is created and no script runs.

Transcripts (the user's typed text and the model's reply), a tool's arguments
and result, and an error message carry HTML payloads through real sockets from
``parley serve`` (fake models, which return the payloads); the page must show
them literally in the transcript, the toast and the events panel.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from parley.engine.config import EngineConfig
from parley.engine.models.base import ChatChunk, ChatRequest, Finish, ToolCallDelta
from parley.host.runtime import EngineRuntime
from parley.server.tools import ServerTool, ToolRegistry
from tests.support.fakes import FakeLlm, FakeModels
from tests.support.serve import serve_local
from tests.ui.conftest import OpenPage

pytestmark = [pytest.mark.browser]

IMG = '<img src="x" onerror="window.__xss=(window.__xss||0)+1">'
SCRIPT = "<script>window.__xss=(window.__xss||0)+1</script>"
PAYLOAD = f"{IMG}{SCRIPT}<b>bold</b>"


class MarkupLlm(FakeLlm):
    """Replies with markup, and calls the forced tool with markup arguments."""

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ChatChunk, None]:
        if request.tool_choice.mode == "function" and request.tools:
            yield ToolCallDelta(0, call_id="call_markup1", name=request.tool_choice.name)
            yield ToolCallDelta(0, arguments=json.dumps({"text": PAYLOAD}))
            yield Finish("tool_calls", 10, 5)
            return
        async for chunk in super().stream(request):
            yield chunk


def echo(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"echo": args.get("text"), "extra": PAYLOAD}


TOOL = ServerTool(
    "echo_markup",
    "Echo the text back.",
    {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    echo,
)


async def test_markup_is_shown_as_text_everywhere(open_page: OpenPage) -> None:
    models = FakeModels(llm=MarkupLlm(reply=f"Here it is: {PAYLOAD} done."))
    runtime = EngineRuntime(EngineConfig(validate_events=True), models=models)  # type: ignore[arg-type]
    async with serve_local(runtime, ToolRegistry([TOOL])) as srv:
        page = await open_page(srv.http)
        await page.connect()
        # A transcript: the user's text and the model's reply.
        await page.send_text(f"Say {PAYLOAD}")
        transcript = page.page.locator("#transcript")
        await page.until(
            "() => document.querySelector('#transcript').innerText.includes('done.')", what="the reply"
        )
        # A tool call: forced, so the fake model calls it with markup arguments.
        await page.js(
            "parley.client.update({type: 'realtime', tool_choice: {type: 'function', name: 'echo_markup'}})"
        )
        await page.send_text("Echo it")
        card = page.page.locator("#transcript .tool-card[data-tool=echo_markup]").first
        await card.locator(".tool-result").wait_for(timeout=30000)
        # An error message: the engine names the unknown event type in its error.
        await page.js("(t) => parley.client.send({type: t})", PAYLOAD)
        await page.until("() => !document.querySelector('#toast').hidden", what="the error toast")
        text = await transcript.inner_text()
        assert IMG in text and SCRIPT in text and "<b>bold</b>" in text, text
        args = await card.locator(".tool-args").inner_text()
        assert "<img src=" in args and "<script>window.__xss" in args, args
        result = await card.locator(".tool-result").inner_text()
        assert "<img src=" in result and "<script>window.__xss" in result, result
        toast = await page.page.inner_text("#toast")
        assert "<img" in toast or "<script" in toast, toast
        await page.tab("events")  # the events panel renders every event's summary
        created = await page.js(
            "() => document.querySelectorAll('img[src=\"x\"], #transcript script, #toast script, #transcript b').length"
        )
        assert created == 0
        assert await page.js("() => window.__xss") is None
        assert not [line for line in page.logs if line.startswith("pageerror")], page.logs
