"""Running Parley servers inside the test's event loop on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    host: str
    port: int
    app: Any

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://{self.host}:{self.port}"


@contextlib.asynccontextmanager
async def run_uvicorn(config: uvicorn.Config) -> AsyncIterator[RunningServer]:
    """``config``'s app under uvicorn in this loop, from started to stopped."""
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server exited during startup")
        await asyncio.sleep(0.02)
    try:
        yield RunningServer(config.host, config.port, config.app)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


@contextlib.asynccontextmanager
async def serve_app(
    app: Any, host: str = "127.0.0.1", port: int | None = None, ws_max_size: int = 16 * 1024 * 1024
) -> AsyncIterator[RunningServer]:
    config = uvicorn.Config(
        app,
        host=host,
        port=port or free_port(),
        log_level="warning",
        ws_max_size=ws_max_size,
        ws_ping_interval=None,
        lifespan="on",
    )
    async with run_uvicorn(config) as running:
        yield running
