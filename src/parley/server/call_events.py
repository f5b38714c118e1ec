"""Parley's own events of a WebRTC call (``parley.agent``, ``parley.handoff`` …), for its page.

Over WebRTC the page's events come from the upstream over the data channel,
where the server cannot add any; the sideband that runs a call's scenario
publishes here, and ``GET /api/realtime/calls/{call_id}/events`` streams them
to the page as JSON lines. A short backlog lets a page that subscribes a moment
after the call started still see the first agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

BACKLOG = 50
QUEUE = 200


class CallEvents:
    def __init__(self) -> None:
        self._backlog: dict[str, deque[dict[str, Any]]] = {}
        self._subscribers: dict[str, set[asyncio.Queue[dict[str, Any] | None]]] = {}

    def open(self, call_id: str) -> None:
        self._backlog.setdefault(call_id, deque(maxlen=BACKLOG))

    def known(self, call_id: str) -> bool:
        return call_id in self._backlog

    async def publish(self, call_id: str, event: dict[str, Any]) -> None:
        backlog = self._backlog.get(call_id)
        if backlog is None:
            return
        backlog.append(event)
        for queue in self._subscribers.get(call_id, ()):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

    def close(self, call_id: str) -> None:
        self._backlog.pop(call_id, None)
        for queue in self._subscribers.pop(call_id, set()):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    async def stream(self, call_id: str) -> AsyncIterator[bytes]:
        """JSON lines until the call ends (a comment line every 15 s keeps proxies from timing out)."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE)
        event: dict[str, Any] | None
        for event in list(self._backlog.get(call_id, ())):
            queue.put_nowait(event)
        self._subscribers.setdefault(call_id, set()).add(queue)
        try:
            yield b"\n"
            while True:
                try:
                    async with asyncio.timeout(15):
                        event = await queue.get()
                except TimeoutError:
                    yield b"\n"
                    continue
                if event is None:
                    return
                yield (json.dumps(event, separators=(",", ":")) + "\n").encode()
        finally:
            subs = self._subscribers.get(call_id)
            if subs is not None:
                subs.discard(queue)
