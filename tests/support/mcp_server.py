"""A real MCP server (the ``mcp`` SDK's ``MCPServer``) on loopback, for the MCP tool tests.

Tools: ``get_weather`` (a fixed forecast), ``get_stock_price``, ``broken_tool`` (raises),
``slow_tool`` (sleeps), ``huge_tool`` (a result over the engine's cap). Requests' headers
are recorded so tests can check the configured ``headers`` arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from tests.support.servers import RunningServer, serve_app


def build_server(calls: list[tuple[str, dict[str, Any]]]) -> MCPServer:
    server: MCPServer = MCPServer("parley-test")

    @server.tool()
    def get_weather(city: str) -> str:
        """Get the current weather for a city."""
        calls.append(("get_weather", {"city": city}))
        return f"It is sunny and 21 degrees in {city}."

    @server.tool()
    def get_stock_price(symbol: str) -> str:
        """Get the latest price of a stock."""
        calls.append(("get_stock_price", {"symbol": symbol}))
        return f"{symbol} trades at 123.45 dollars."

    @server.tool()
    def broken_tool(city: str) -> str:
        """A tool that always fails."""
        raise ToolError("the weather station is offline")  # the SDK passes this message on

    @server.tool()
    async def slow_tool(city: str) -> str:
        """A tool that takes too long."""
        await asyncio.sleep(30)
        return "late"

    @server.tool()
    def huge_tool(city: str) -> str:
        """A tool whose result is too large."""
        return "x" * 200_000

    return server


class HeaderLog:
    """ASGI middleware keeping each request's headers."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.headers: list[dict[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.headers.append({k.decode().lower(): v.decode() for k, v in scope["headers"]})
        await self.app(scope, receive, send)


@contextlib.asynccontextmanager
async def mcp_server(
    transport: str = "streamable",
) -> AsyncIterator[tuple[str, list[tuple[str, dict[str, Any]]], HeaderLog]]:
    """(URL of the endpoint, calls the tools received, header log); ``transport="sse"`` serves
    only the older SSE transport."""
    calls: list[tuple[str, dict[str, Any]]] = []
    server = build_server(calls)
    app = HeaderLog(server.sse_app() if transport == "sse" else server.streamable_http_app())
    path = "/sse" if transport == "sse" else "/mcp"
    async with serve_app(app) as running:
        srv: RunningServer = running
        yield f"{srv.http}{path}", calls, app
