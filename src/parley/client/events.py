"""Callbacks and waiters for a conversation's events (server events and high-level ones)."""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

Callback = Callable[[Any], Awaitable[None] | None]


class EventHub:
    """``on(name)`` callbacks (sync or async) and ``wait_for(name, predicate)`` futures.

    A callback that raises is logged and does not stop the others: user code must not be able
    to break the conversation's event loop.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, list[Callback]] = collections.defaultdict(list)
        self._waiters: list[tuple[str, Callable[[dict], bool], asyncio.Future]] = []

    def on(self, name: str, callback: Callback | None = None):
        """Register ``callback`` (sync or async) for an event; usable as a decorator."""
        if callback is None:

            def deco(fn: Callback) -> Callback:
                self._handlers[name].append(fn)
                return fn

            return deco
        self._handlers[name].append(callback)
        return callback

    async def notify(self, name: str, payload: Any) -> None:
        """Run the callbacks of ``name`` (not its waiters)."""
        for cb in list(self._handlers.get(name, ())):
            try:
                result = cb(payload)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("callback for %s failed", name)

    async def wait_for(
        self, event_type: str, predicate: Callable[[dict], bool] | None = None, timeout: float | None = 30.0
    ) -> Any:
        """Wait for the next server (or high-level) event of ``event_type`` matching ``predicate``."""
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        entry = (event_type, predicate or (lambda _e: True), fut)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    def _resolve_waiters(self, event_type: str, payload: Any) -> None:
        for etype, pred, fut in list(self._waiters):
            if etype == event_type and not fut.done():
                try:
                    if pred(payload):
                        fut.set_result(payload)
                except Exception as exc:
                    fut.set_exception(exc)

    async def signal(self, name: str, payload: Any) -> None:
        """Resolve the waiters of ``name``, then run its callbacks."""
        self._resolve_waiters(name, payload)
        await self.notify(name, payload)
