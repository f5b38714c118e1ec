"""``parley serve``: the web app, with the local engine embedded or another Realtime provider upstream."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvicorn

from parley.engine.models.registry import backend_names
from parley.host import cli as engine_cli
from parley.host.deadlines import deadline_http_protocol
from parley.httpapi import is_loopback
from parley.server.config import ServerConfig, resolve_upstream
from parley.server.frames import relay_ws_protocol

T = TypeVar("T")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--upstream",
        default=None,
        metavar="URL",
        help="a remote OpenAI-Realtime-compatible server, e.g. http://127.0.0.1:8765 "
        "(default: OpenAI if OPENAI_API_KEY is set, else the embedded local engine)",
    )
    parser.add_argument(
        "--upstream-key", default=None, metavar="KEY", help="the key for --upstream (env PARLEY_UPSTREAM_KEY)"
    )
    parser.add_argument(
        "--local", action="store_true", help="embed the local engine even if OPENAI_API_KEY is set"
    )
    parser.add_argument(
        "--model", default="gpt-realtime", help="model name sent upstream (default gpt-realtime)"
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="another origin allowed to use the API (repeatable), e.g. https://app.example",
    )
    parser.add_argument(
        "--secret-ttl",
        type=int,
        default=60,
        help="lifetime in seconds of minted ek_ secrets (10-7200, default 60)",
    )
    parser.add_argument(
        "--llm",
        choices=backend_names("llm"),
        default=None,
        help="embedded engine's LLM backend (see parley engine --help)",
    )
    parser.add_argument(
        "--llm-base-url", default=None, help="embedded engine: OpenAI-compatible LLM server URL"
    )
    parser.add_argument("--llm-model", default=None, help="embedded engine: model name on that LLM server")
    parser.add_argument(
        "--max-sessions",
        type=int,
        default=None,
        help="embedded engine: concurrent session limit (env PARLEY_MAX_SESSIONS)",
    )
    engine_cli.add_node_options(parser)
    parser.add_argument(
        "--scenario",
        default=None,
        metavar="NAME|FILE",
        help="run this agent scenario for every session that does not choose one: a shipped one "
        "(assistant, customer_service, chat_supervisor) or a YAML/JSON file (added to the picker)",
    )


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    upstream_url, upstream_key = resolve_upstream(args.upstream, args.upstream_key, args.local)
    config = ServerConfig(
        host=args.host,
        port=args.port,
        upstream_url=upstream_url,
        upstream_key=upstream_key,
        model=args.model,
        allow_origins=list(args.allow_origin),
        secret_ttl=max(10, min(7200, args.secret_ttl)),
    )
    config.engine.host, config.engine.port = args.host, args.port
    if args.llm:
        config.engine.models.llm = args.llm
    if args.llm_base_url:
        config.engine.models.llm_base_url = args.llm_base_url
    if args.llm_model:
        config.engine.models.llm_model = args.llm_model
    if args.max_sessions is not None:
        config.engine.max_sessions = args.max_sessions
    engine_cli.apply_node_options(args, config.engine)
    if args.scenario:
        from parley.scenarios import resolve

        scenario = resolve(args.scenario)  # ScenarioError (a ValueError) names the file and field
        if scenario.name not in _shipped() or args.scenario.endswith((".yaml", ".yml", ".json")):
            config.scenario_files.append(args.scenario)
        config.default_scenario = scenario.name
    return config


def _shipped() -> set[str]:
    from parley.scenarios import builtin

    return set(builtin())


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"parley serve: {exc}", file=sys.stderr)
        return 2
    if not is_loopback(config.host) and not config.access_token:
        print(
            f"Refusing to bind {config.host} without an access token: anyone who can reach the port could "
            "spend the server's key.\nSet PARLEY_ACCESS_TOKEN, or bind 127.0.0.1.",
            file=sys.stderr,
        )
        return 2
    if config.upstream_url is not None and not config.upstream_key:
        print("Warning: the upstream has no key (--upstream-key / PARLEY_UPSTREAM_KEY).", file=sys.stderr)
    return run_loop(_serve(config))


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop when it is installed (uvicorn[standard] brings it), else asyncio's loop.

    ``uvicorn.Server.serve()`` runs on whatever loop it is given; under plain
    ``asyncio.run`` the relay paid asyncio's slower event loop on every frame.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


async def run_server(app: Any, config: ServerConfig, **overrides: Any) -> None:
    """Serve ``app`` until uvicorn is told to stop (``overrides`` adjust :func:`uvicorn_config`);
    SIGTERM drains first (host/drain.py)."""
    from parley.host.agent import start_agent
    from parley.host.drain import DrainingServer

    state = getattr(app, "state", None)
    server = DrainingServer(uvicorn_config(app, config, **overrides), getattr(state, "drain", None))
    load = getattr(state, "load", None)
    port = config.engine.agent_port
    agent = await start_agent(config.host, port, load) if port and load is not None else None
    # What exists by now (imports, the app, loaded models) lives as long as the process. Frozen,
    # the ~130k objects are no longer walked by every full collection: one took ~60 ms, during
    # which no relayed frame moved, and sessions coming and going trigger them.
    gc.collect()
    gc.freeze()
    try:
        await server.serve()
    finally:
        if agent is not None:
            agent.close()
            await agent.wait_closed()


def uvicorn_config(app: Any, config: ServerConfig, **overrides: Any) -> uvicorn.Config:
    """uvicorn's settings for ``parley serve`` (the relay benchmark runs with the same)."""
    settings: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "ws_max_size": config.max_message_bytes,
        "log_level": "warning",
        "ws_ping_interval": None,
        "server_header": False,
        # Browsers offer permessage-deflate; accepting it would make the relay inflate and deflate every
        # audio frame (most of its CPU) for little: base64 PCM barely compresses.
        "ws_per_message_deflate": False,
        # uvicorn's sans-I/O WebSocket protocol, with the relay's frame endpoint (see frames.py).
        "ws": relay_ws_protocol(),
        # Slow or stalled requests (headers, bodies) are cut after stated times (see deadlines.py).
        "http": deadline_http_protocol(),
        **overrides,
    }
    return uvicorn.Config(app, **settings)


async def _serve(config: ServerConfig) -> int:
    from rich.console import Console

    from parley.server.app import create_app
    from parley.server.upstream import build_upstream

    console = Console(stderr=True)
    upstream = build_upstream(config)
    if config.upstream_kind == "local":
        from parley.engine.models.registry import ModelUnavailable
        from parley.host.cli import prove_models

        if not await prove_models(config.engine.models, console):
            return 1
        with console.status("Loading local models…") as status:
            try:
                await upstream.start(lambda stage, message: status.update(f"Loading {stage}: {message}"))
            except ModelUnavailable as exc:
                console.print(f"[red]{exc}[/red]")
                return 1
    from parley.scenarios import ScenarioError

    try:
        app = create_app(config, upstream)
    except ScenarioError as exc:
        console.print(f"[red]parley serve: {exc}[/red]")
        return 2
    shown_host = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
    url = f"http://{'[' + shown_host + ']' if ':' in shown_host else shown_host}:{config.port}/"
    console.print(f"[bold green]Parley[/] upstream: {upstream.label} · model {config.model}")
    if config.default_scenario:
        console.print(f"Scenario for every session: {config.default_scenario}")
    token_hint = " (append ?token=$PARLEY_ACCESS_TOKEN)" if config.access_token else ""
    console.print(f"Open [bold]{url}[/]{token_hint}")
    if os.environ.get("OPENAI_API_KEY") and config.upstream_kind == "local":
        console.print("OPENAI_API_KEY is set but --local was given: using the local engine.")
    await run_server(app, config)
    return 0
