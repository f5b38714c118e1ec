"""Shared helpers for the WebRTC tests: an engine on loopback, offers, leak checks.

Everything here works in a loopback-only network namespace (``unshare -n``):
the engine offers 127.0.0.1 as a host candidate and peers use no ICE servers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection

from parley.bench.webrtc_peer import strip_ice_candidates
from parley.engine.config import EngineConfig
from parley.host.app import create_engine_app
from parley.host.runtime import EngineRuntime
from parley.media.ice import allow_loopback_candidates
from tests.support.fakes import FakeModels
from tests.support.servers import RunningServer, serve_app

# Test peers run in this process and need loopback candidates as much as the engine does.
allow_loopback_candidates()


def fake_runtime(models: Any = None, **config: Any) -> EngineRuntime:
    return EngineRuntime(EngineConfig(validate_events=True, **config), models=models or FakeModels())  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def engine(runtime: EngineRuntime | None = None, **config: Any) -> AsyncIterator[RunningServer]:
    runtime = runtime or fake_runtime(**config)
    async with serve_app(create_engine_app(runtime)) as server:
        server.runtime = runtime  # type: ignore[attr-defined]
        yield server


async def released(runtime: EngineRuntime, within: float = 5.0) -> None:
    """Wait until every call and session is gone (raises on timeout: a leak)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while runtime.calls or runtime.sessions:
        if loop.time() > deadline:
            raise AssertionError(f"leaked: calls={list(runtime.calls)} sessions={list(runtime.sessions)}")
        await asyncio.sleep(0.02)


def call_tasks(call_id: str = "rtc_") -> list[asyncio.Task[Any]]:
    """Live tasks that belong to a call (named after its ``rtc_…`` id; by default any call's)."""
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(call_id) and not t.done()]


async def browser_like_offer(audio: bool = True, datachannel: bool = True) -> str:
    """An offer as a browser POSTs it (before gathering: no candidates), from a throwaway aiortc peer."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # None would mean Google's STUN
    try:
        if audio:
            pc.addTransceiver("audio", direction="sendrecv")
        if datachannel:
            pc.createDataChannel("oai-events")
        await pc.setLocalDescription(await pc.createOffer())
        return strip_ice_candidates(pc.localDescription.sdp)
    finally:
        await pc.close()
