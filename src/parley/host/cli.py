"""``parley engine``: run the local OpenAI-Realtime-compatible engine."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import TYPE_CHECKING, Any

from parley.engine.config import EngineConfig, ModelConfig
from parley.engine.models.registry import backend_names
from parley.httpapi import is_loopback

if TYPE_CHECKING:
    from parley.host.runtime import EngineRuntime


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
    parser.add_argument(
        "--stt",
        choices=backend_names("stt"),
        default=None,
        help="STT backend: local Whisper (default) or an OpenAI-compatible /v1/audio/transcriptions",
    )
    parser.add_argument("--stt-base-url", default=None, help="base URL of the OpenAI-compatible STT server")
    parser.add_argument(
        "--tts",
        choices=backend_names("tts"),
        default=None,
        help="TTS backend: local Piper (default) or an OpenAI-compatible /v1/audio/speech",
    )
    parser.add_argument("--tts-base-url", default=None, help="base URL of the OpenAI-compatible TTS server")
    parser.add_argument(
        "--max-sessions", type=int, default=None, help="concurrent session limit (env PARLEY_MAX_SESSIONS)"
    )
    add_node_options(parser)


def add_node_options(parser: argparse.ArgumentParser) -> None:
    """Options of a node behind a load balancer, shared by ``parley engine`` and ``parley serve``."""
    parser.add_argument(
        "--agent-port",
        type=int,
        default=None,
        help="serve HAProxy's agent-check (this node's weight) on this port (env PARLEY_AGENT_PORT)",
    )
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=None,
        help="on SIGTERM, how long running sessions may go on before they are closed (default 30)",
    )


def apply_node_options(args: argparse.Namespace, config: EngineConfig) -> None:
    if args.agent_port is not None:
        config.agent_port = args.agent_port
    if args.drain_seconds is not None:
        config.drain_seconds = args.drain_seconds


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
    if args.stt:
        config.models.stt = args.stt
    if args.stt_base_url:
        config.models.stt_base_url = args.stt_base_url
    if args.tts:
        config.models.tts = args.tts
    if args.tts_base_url:
        config.models.tts_base_url = args.tts_base_url
    if args.max_sessions is not None:
        config.max_sessions = args.max_sessions
    apply_node_options(args, config)
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
    from rich.console import Console

    from parley.engine.models.registry import ModelUnavailable
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
    await serve_engine(runtime, console)
    return 0


async def serve_engine(runtime: EngineRuntime, console: Any) -> None:
    """Serve a started runtime until shut down: SIGTERM drains it first (drain.py), and the
    HAProxy agent (agent.py) answers on ``config.agent_port`` when set."""
    import uvicorn

    from parley.host.agent import start_agent
    from parley.host.app import create_engine_app
    from parley.host.deadlines import deadline_http_protocol
    from parley.host.drain import DrainingServer, runtime_drain

    config = runtime.config
    app = create_engine_app(runtime)
    server = DrainingServer(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            ws_max_size=2 * config.max_message_bytes,
            http=deadline_http_protocol(),
            log_level="warning",
            ws_ping_interval=None,
        ),
        runtime_drain(runtime),
    )
    agent = await start_agent(config.host, config.agent_port, runtime.load) if config.agent_port else None
    base = f"{config.host}:{config.port}"
    console.print(
        f"[bold green]Parley engine[/] ready: ws://{base}/v1/realtime · http://{base}/v1/realtime/calls"
        f" · LLM {runtime.models.llm.name if runtime.models else '?'}"
        f"{'' if config.api_key else ' · loopback only (no key)'}"
        f"{f' · agent :{config.agent_port}' if agent else ''}"
    )
    try:
        await server.serve()
    finally:
        if agent is not None:
            agent.close()
            await agent.wait_closed()


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
