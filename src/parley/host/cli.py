"""``parley engine``: run the local OpenAI-Realtime-compatible engine."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from parley.engine.config import EngineConfig, ModelConfig
from parley.engine.models.registry import backend_names
from parley.httpapi import is_loopback


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    parser.add_argument(
        "--api-key",
        default=None,
        help="engine key clients must present (env PARLEY_ENGINE_KEY); required off loopback",
    )
    parser.add_argument(
        "--llm",
        choices=backend_names("llm"),
        default=None,
        help="LLM backend: local llama.cpp (default) or an OpenAI-compatible server",
    )
    parser.add_argument("--llm-base-url", default=None, help="base URL of the OpenAI-compatible LLM server")
    parser.add_argument("--llm-model", default=None, help="model name on the OpenAI-compatible LLM server")
    parser.add_argument("--llm-api-key", default=None, help="API key of the OpenAI-compatible LLM server")
    parser.add_argument("--max-sessions", type=int, default=None, help="concurrent session limit")


def config_from_args(args: argparse.Namespace) -> EngineConfig:
    config = EngineConfig(host=args.host, port=args.port)
    if args.api_key:
        config.api_key = args.api_key
    if args.llm:
        config.models.llm = args.llm
    if args.llm_base_url:
        config.models.llm_base_url = args.llm_base_url
    if args.llm_model:
        config.models.llm_model = args.llm_model
    if args.llm_api_key:
        config.models.llm_api_key = args.llm_api_key
    if args.max_sessions:
        config.max_sessions = args.max_sessions
    return config


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if not is_loopback(config.host) and not config.api_key:
        print(
            f"Refusing to bind {config.host} without a key: anyone on the network could use the engine.\n"
            "Set PARLEY_ENGINE_KEY or pass --api-key, or bind 127.0.0.1.",
            file=sys.stderr,
        )
        return 2
    return asyncio.run(_serve(config))


async def _serve(config: EngineConfig) -> int:
    import uvicorn
    from rich.console import Console

    from parley.engine.models.registry import ModelUnavailable
    from parley.host.app import create_engine_app
    from parley.host.deadlines import deadline_http_protocol
    from parley.host.runtime import EngineRuntime

    console = Console(stderr=True)
    if not await prove_models(config.models, console):
        return 1
    runtime = EngineRuntime(config)
    with console.status("Loading local models…") as status:
        try:
            await runtime.start(lambda stage, message: status.update(f"Loading {stage}: {message}"))
        except ModelUnavailable as exc:
            console.print(f"[red]{exc}[/red]")
            return 1
    app = create_engine_app(runtime)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            ws_max_size=2 * config.max_message_bytes,
            http=deadline_http_protocol(),
            log_level="warning",
            ws_ping_interval=None,
        )
    )
    base = f"{config.host}:{config.port}"
    console.print(
        f"[bold green]Parley engine[/] ready: ws://{base}/v1/realtime · http://{base}/v1/realtime/calls"
        f" · LLM {runtime.models.llm.name if runtime.models else '?'}"
        f"{'' if config.api_key else ' · loopback only (no key)'}"
    )
    await server.serve()
    return 0


async def prove_models(cfg: ModelConfig, console: Any) -> bool:
    """Before loading models in-process, make sure each local stage has run on this machine.

    A native library that dies with a signal would otherwise take the server down with a bare
    "Illegal instruction". The probe runs once per machine and install (see ``selfcheck``);
    ``PARLEY_SELFCHECK=0`` skips it.
    """
    from parley.engine.models import selfcheck

    if os.environ.get("PARLEY_SELFCHECK", "1") == "0" or selfcheck.passed_here(cfg):
        return True
    with console.status("First start on this machine: proving each model stage…") as status:
        failures = await asyncio.to_thread(
            selfcheck.ensure_passed, cfg, lambda stage: status.update(f"Proving {stage} in a child process…")
        )
    for failure in failures:
        console.print(f"✗ {failure.describe()}", markup=False, style="red", soft_wrap=True)
    return not failures
