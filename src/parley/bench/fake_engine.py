"""A session node on the engine's fake models: ``python -m parley.bench.fake_engine [parley engine options]``.

Everything of ``parley engine`` but the models (the same app, admission,
``/readyz``, HAProxy agent, SIGTERM drain, signed ``ek_`` secrets), with the
tiny stand-ins of :mod:`parley.bench.fake_models` in their place, so tests and
benchmarks of the session tier (several nodes behind HAProxy on one 2-core
machine) measure the hosting, not the models. Never for real conversations:
the fake STT always hears the same question.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from parley.bench.fake_models import FakeModels
from parley.host import cli as engine_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parley.bench.fake_engine", description=__doc__)
    engine_cli.configure(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = engine_cli.config_from_args(args)
    return asyncio.run(_serve(config))


async def _serve(config: engine_cli.EngineConfig) -> int:
    from rich.console import Console

    from parley.host.runtime import EngineRuntime

    runtime = EngineRuntime(config, models=FakeModels())  # type: ignore[arg-type]
    await engine_cli.serve_engine(runtime, Console(stderr=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
