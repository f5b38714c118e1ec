"""Streaming audio at real-time pace, like a microphone."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable

import numpy as np

RATE = 24000


async def stream_pcm(
    send: Callable[[str], Awaitable[None]], pcm: np.ndarray, chunk_ms: int = 20, realtime: bool = True
) -> None:
    """Send ``pcm`` (24 kHz int16) as base64 chunks via ``send(b64)`` on a fixed schedule."""
    step = RATE * chunk_ms // 1000
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    for i in range(0, len(pcm), step):
        await send(base64.b64encode(pcm[i : i + step].astype("<i2").tobytes()).decode())
        if realtime:
            next_at += chunk_ms / 1000
            await asyncio.sleep(max(0.0, next_at - loop.time()))
