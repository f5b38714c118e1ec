"""One set of real models per test process (loading takes seconds; every suite shares it)."""

from __future__ import annotations

import asyncio
from typing import Any

_models: Any = None
_lock = asyncio.Lock()


async def real_models() -> Any:
    global _models
    async with _lock:
        if _models is None:
            from parley.engine.config import ModelConfig
            from parley.engine.models.registry import load_models

            _models = await load_models(ModelConfig())
    return _models
