from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from parley.engine.config import EngineConfig
from parley.host.runtime import EngineRuntime
from tests.support.models import real_models
from tests.support.serve import Serve, serve_local


@pytest.fixture(scope="module")
async def models() -> Any:
    return await real_models()


@pytest.fixture(scope="module")
async def serve(models: Any) -> AsyncIterator[Serve]:
    """``parley serve`` with the embedded engine on real models, on a loopback port."""
    runtime = EngineRuntime(EngineConfig(validate_events=True), models=models)
    async with serve_local(runtime) as srv:
        yield srv
