"""``parley bench <name>``: the benchmarks, each a module with ``configure(parser)`` and ``run(args)``."""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS: dict[str, tuple[str, str]] = {
    "turn": ("parley.bench.turn", "turn latency and barge-in through a real WebSocket (local engine)"),
    "load": (
        "parley.bench.load",
        "many simulated users talking to one parley serve at once: latency, underruns, capacity",
    ),
    "batching": (
        "parley.bench.batching",
        "what batching several sessions' Whisper and LLM work would buy on this CPU",
    ),
    "quality": (
        "parley.bench.quality",
        "answer quality and tool decisions of each local LLM, with the web page's session and serve's tools",
    ),
    "models": ("parley.bench.models", "each model stage alone: VAD, STT, LLM, TTS latency and peak RSS"),
    "turn-taking": (
        "parley.bench.turn_taking",
        "semantic_vad vs server_vad on synthesised speech with pauses inside clauses: premature replies, latency",
    ),
    "barge-in": ("parley.bench.barge_in", "client barge-in: speech onset → silent output, truncation error"),
    "webrtc": ("parley.bench.webrtc_connect", "WebRTC connect: offer → data channel open / session.created"),
    "fuzz": (
        "parley.bench.fuzz",
        "hostile client events over WebSocket and WebRTC: dropped sessions, crashes, memory",
    ),
    "soak": (
        "parley.bench.soak",
        "many sessions holding turns for a long time: slopes of RSS, fds, threads, tasks; turn latency",
    ),
    "relay": (
        "parley.bench.relay",
        "parley serve's WebSocket relay: added latency per event, CPU/memory per session",
    ),
}


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, (module, help_) in BENCHMARKS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        importlib.import_module(module).configure(p)


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(BENCHMARKS[args.benchmark][0])
    return int(module.run(args) or 0)
