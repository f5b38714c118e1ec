"""The browser UI through ``parley serve`` (real models): an MCP call shows as a tool card.

The page adds an MCP server (the ``mcp`` SDK's, on loopback) to its session; the engine
lists it, the forced call runs on the server, and the card shows ``server.tool``, the
arguments and the result, then the answer is spoken.
"""

from __future__ import annotations

import pytest

from tests.support.mcp_server import mcp_server
from tests.support.serve import Serve
from tests.ui.conftest import OpenPage

pytestmark = [pytest.mark.models, pytest.mark.browser]


async def test_mcp_call_shows_as_a_tool_card(serve: Serve, open_page: OpenPage) -> None:
    async with mcp_server() as (url, calls, _):
        page = await open_page(serve.http)
        await page.connect()
        before = await page.now()
        mcp = {
            "type": "mcp",
            "server_label": "weather",
            "server_url": url,
            "allowed_tools": ["get_weather"],
            "require_approval": "never",
        }
        await page.js(
            """(mcp) => parley.client.update({type: 'realtime',
                 tools: [...parley.session.tools, mcp],
                 tool_choice: {type: 'mcp', server_label: 'weather', name: 'get_weather'}})""",
            mcp,
        )
        await page.wait_event("mcp_list_tools.completed", after=before)
        await page.send_text("What is the weather in Paris?")
        card = page.page.locator('#transcript .tool-card[data-tool="weather.get_weather"]')
        await card.wait_for(timeout=120000)
        await card.locator(".tool-result").wait_for(timeout=60000)
        assert "city" in await card.locator(".tool-args").inner_text()
        assert "sunny" in await card.locator(".tool-result").inner_text()
        assert "done" in await card.locator(".tool-head").inner_text()
        assert calls and calls[0][0] == "get_weather"
        await page.wait_event("response.done", after=before, within=120)
