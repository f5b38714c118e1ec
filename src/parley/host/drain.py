"""SIGTERM drains a node: refuse new sessions, let the running ones finish within a bound, then exit.

uvicorn's own SIGTERM handling stops listening and closes every WebSocket at
once (1012). A session node behind a load balancer should instead:

1. refuse new sessions at once (HTTP 503 + ``Retry-After``, WebSocket 1013)
   and report ``draining`` on ``/readyz`` (503) and the agent port (``drain``),
   so the balancer stops sending it new work while it keeps listening;
2. let the sessions it has run until they end by themselves, for at most
   ``PARLEY_DRAIN_SECONDS``;
3. close the rest with ``1001 going away`` (clients reconnect, and the
   balancer sends them elsewhere), then shut down as uvicorn does and exit 0.

A second SIGTERM, or SIGINT (Ctrl-C), skips the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import uvicorn

from parley.host.runtime import EngineRuntime
from parley.protocol import close_codes

log = logging.getLogger(__name__)

POLL_S = 0.1
CLOSE_GRACE_S = 2.0  # after the bound: time for closed sessions to flush and go


@dataclass
class Drain:
    """What a drain does to one app: stop admitting, count what is left, end it."""

    begin: Callable[[], None]
    active: Callable[[], int]
    close_all: Callable[[], Awaitable[None]]
    seconds: float


def runtime_drain(runtime: EngineRuntime, extra_active: Callable[[], int] | None = None) -> Drain:
    """The drain of an engine runtime (``parley engine``, or the engine embedded in ``parley serve``)."""

    def begin() -> None:
        runtime.draining = True

    def active() -> int:
        return len(runtime.sessions) + (extra_active() if extra_active else 0)

    async def close_all() -> None:
        await close_sessions(runtime, "server shutting down")

    return Drain(begin, active, close_all, runtime.config.drain_seconds)


async def close_sessions(runtime: EngineRuntime, reason: str) -> None:
    """Ask each live session's transport to close it with 1001 (a WebSocket) or end the call."""
    for session in list(runtime.sessions.values()):
        if session.on_close is not None:
            session.on_close(close_codes.GOING_AWAY, reason)
        else:
            await runtime.end_session(session)


class DrainingServer(uvicorn.Server):
    """uvicorn's server whose first SIGTERM drains (see the module docstring)."""

    def __init__(self, config: uvicorn.Config, drain: Drain | None) -> None:
        super().__init__(config)
        self.drain = drain
        self.drain_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.drain_report: dict[str, Any] = {}

    async def startup(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self.drain is not None and self.drain_task is None and self._loop:
            # Runs as a signal handler on the loop's thread: hand the work to the loop.
            self._loop.call_soon_threadsafe(self._start_drain)
            return
        # SIGINT, a second SIGTERM, or nothing to drain: uvicorn's immediate shutdown.
        super().handle_exit(sig, frame)

    def _start_drain(self) -> None:
        if self.drain_task is None:
            self.drain_task = asyncio.create_task(self.run_drain(), name="drain")

    async def run_drain(self) -> None:
        assert self.drain is not None
        drain = self.drain
        started = time.monotonic()
        drain.begin()
        at_start = drain.active()
        log.warning("draining: %d session(s) open, waiting up to %.0f s", at_start, drain.seconds)
        # Sessions end in many places (clients, timeouts, errors): there is no one event to wait on.
        while drain.active() and time.monotonic() - started < drain.seconds and not self.should_exit:  # noqa: ASYNC110
            await asyncio.sleep(POLL_S)
        left = drain.active()
        if left:
            log.warning("drain bound reached: closing %d session(s) with 1001", left)
            with contextlib.suppress(Exception):
                await drain.close_all()
            deadline = time.monotonic() + CLOSE_GRACE_S
            while drain.active() and time.monotonic() < deadline:  # noqa: ASYNC110 - as above
                await asyncio.sleep(POLL_S)
        self.drain_report = {
            "sessions_at_start": at_start,
            "closed_at_bound": left,
            "seconds": round(time.monotonic() - started, 2),
        }
        log.warning("drained in %.1f s; shutting down", self.drain_report["seconds"])
        self.should_exit = True
