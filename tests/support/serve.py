"""Running ``parley serve`` in the test loop, with the embedded engine or a separate engine upstream."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from parley.engine.config import EngineConfig
from parley.host.app import create_engine_app
from parley.host.runtime import EngineRuntime
from parley.server.app import create_app
from parley.server.cli import uvicorn_config
from parley.server.config import ServerConfig
from parley.server.tools import ToolRegistry
from parley.server.upstream import LocalUpstream, RemoteUpstream
from tests.support.fakes import FakeModels
from tests.support.servers import RunningServer, free_port, run_uvicorn, serve_app

UPSTREAM_KEY = "test-upstream-key-0123"  # not shaped like a real key, on purpose


def fake_runtime(**kw: Any) -> EngineRuntime:
    return EngineRuntime(EngineConfig(validate_events=True, **kw), models=FakeModels())  # type: ignore[arg-type]


@dataclass
class Serve:
    server: RunningServer
    config: ServerConfig
    app: FastAPI
    runtime: EngineRuntime | None = None
    engine: RunningServer | None = None  # the separate upstream engine, if any

    @property
    def http(self) -> str:
        return self.server.http

    @property
    def ws(self) -> str:
        return self.server.ws


@contextlib.asynccontextmanager
async def serve_parley(
    app: FastAPI, config: ServerConfig, ws: str | None = None
) -> AsyncIterator[RunningServer]:
    """The app under uvicorn with ``parley serve``'s own settings (its WebSocket protocol included),
    on a free loopback port; ``ws`` names another uvicorn WebSocket implementation instead."""
    overrides: dict[str, Any] = {"host": "127.0.0.1", "port": free_port(), "lifespan": "on"}
    if ws is not None:
        overrides["ws"] = ws
    async with run_uvicorn(uvicorn_config(app, config, **overrides)) as running:
        yield running


@contextlib.asynccontextmanager
async def serve_local(
    runtime: EngineRuntime | None = None,
    registry: ToolRegistry | None = None,
    ws: str | None = None,
    **config: Any,
) -> AsyncIterator[Serve]:
    """``parley serve`` with the engine embedded in-process."""
    runtime = runtime or fake_runtime()
    cfg = ServerConfig(**config)
    app = create_app(cfg, LocalUpstream(runtime), registry)
    async with serve_parley(app, cfg, ws) as server:
        yield Serve(server, cfg, app, runtime)


@contextlib.asynccontextmanager
async def serve_remote(
    runtime: EngineRuntime | None = None,
    key: str = UPSTREAM_KEY,
    engine_key: str = UPSTREAM_KEY,
    registry: ToolRegistry | None = None,
    upstream_url: str | None = None,
    ws: str | None = None,
    **config: Any,
) -> AsyncIterator[Serve]:
    """``parley serve --upstream http://127.0.0.1:PORT --upstream-key KEY`` against a separate engine app."""
    runtime = runtime or fake_runtime(api_key=engine_key)
    async with contextlib.AsyncExitStack() as stack:
        engine = None
        if upstream_url is None:
            engine = await stack.enter_async_context(serve_app(create_engine_app(runtime)))
            upstream_url = f"{engine.http}/v1"
        cfg = ServerConfig(upstream_url=upstream_url, upstream_key=key, **config)
        app = create_app(
            cfg, RemoteUpstream(upstream_url, key, cfg.upstream_kind, cfg.max_message_bytes, 5.0), registry
        )
        server = await stack.enter_async_context(serve_parley(app, cfg, ws))
        yield Serve(server, cfg, app, runtime, engine)


def dead_upstream_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
