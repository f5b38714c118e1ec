from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from parley.engine.config import EngineConfig
from parley.host.app import create_engine_app
from parley.host.runtime import EngineRuntime
from tests.support.models import real_models
from tests.support.servers import RunningServer, serve_app


@pytest.fixture(scope="session")
async def models() -> Any:
    return await real_models()


@pytest.fixture(scope="session")
async def engine(models: Any) -> AsyncIterator[RunningServer]:
    """The engine with real models on a loopback port, shared by the e2e tests."""
    runtime = EngineRuntime(EngineConfig(validate_events=True), models=models)
    async with serve_app(create_engine_app(runtime)) as server:
        server.runtime = runtime  # type: ignore[attr-defined]
        yield server
