"""Collecting server events in tests, validating each against openai-python's types."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from parley.protocol.validation import validate_server_event


class EventLog:
    """An EventSink (and a general event collector) that validates strictly as it goes."""

    extensions = True

    def __init__(self, validate: bool = True) -> None:
        self.events: list[dict[str, Any]] = []
        self.times: list[float] = []
        self.validate = validate
        self.closed = False
        self._changed = asyncio.Event()

    def send(self, event: dict[str, Any]) -> None:
        if self.validate and not event["type"].startswith("parley."):
            validate_server_event(event)
        self.events.append(event)
        self.times.append(time.perf_counter())
        self._changed.set()

    def close(self) -> None:
        self.closed = True
        self._changed.set()

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    def index(self, kind: str, start: int = 0) -> int:
        for i in range(start, len(self.events)):
            if self.events[i]["type"] == kind:
                return i
        raise ValueError(kind)

    async def wait_for(
        self,
        kind: str,
        where: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 10.0,
        start: int = 0,
    ) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        seen = start
        while True:
            for i in range(seen, len(self.events)):
                e = self.events[i]
                if e["type"] == kind and (where is None or where(e)):
                    return e
            seen = len(self.events)
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"no {kind} within {timeout}s; saw {self.types()[-30:]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass
