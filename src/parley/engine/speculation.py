"""Speculation: work started during the pause before a turn is confirmed (see TurnDetector).

When the turn detector probes a pause, the session transcribes the audio so far
and may start the reply. The work is kept only if the turn then ends where the
probe began, with the conversation and the session config as they were; if
speech resumes, or anything changed, it is dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from parley.engine.generation import Generation
from parley.engine.models.base import Transcript


@dataclass
class Speculation:
    start: int
    end: int
    conversation_version: int
    config_version: int
    stt: asyncio.Task[Transcript]
    generation: asyncio.Task[Generation] | None = None
    started: float = field(default_factory=time.perf_counter)
    stt_done: float | None = None

    def holds_for(self, start: int, conversation_version: int, config_version: int) -> bool:
        """Whether this work answers a turn starting at ``start`` in the given state."""
        return (
            self.start == start
            and self.conversation_version == conversation_version
            and self.config_version == config_version
        )

    def cancel(self) -> None:
        self.stt.cancel()
        self.cancel_generation()

    def cancel_generation(self) -> None:
        """Drop the speculative reply but keep the transcription (it now belongs to the user item)."""
        if self.generation is not None:
            if self.generation.done() and not self.generation.cancelled() and not self.generation.exception():
                self.generation.result().cancel()
            self.generation.cancel()


Spawn = Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]]


class Speculator:
    """Owns the session's one speculation: start, validity, adopt, drop."""

    def __init__(self, spawn: Spawn) -> None:
        self._spawn = spawn
        self.current: Speculation | None = None

    def start(
        self,
        start: int,
        end: int,
        conversation_version: int,
        config_version: int,
        transcribe: Coroutine[Any, Any, Transcript],
    ) -> Speculation:
        """Replace any current speculation with a transcription of ``start``–``end``."""
        self.drop()
        spec = Speculation(start, end, conversation_version, config_version, stt=self._spawn(transcribe))
        spec.stt.add_done_callback(lambda _: setattr(spec, "stt_done", time.perf_counter()))
        self.current = spec
        return spec

    def generate(self, spec: Speculation, reply: Coroutine[Any, Any, Generation]) -> None:
        """Also start the reply to ``spec`` ahead of the turn's end."""
        spec.generation = self._spawn(reply)

    def is_current(self, stt: asyncio.Task[Transcript]) -> bool:
        return self.current is not None and self.current.stt is stt

    def adopt(self, start: int, conversation_version: int, config_version: int) -> Speculation | None:
        """Hand over the current speculation for a confirmed turn, if it still holds; else drop it."""
        spec, self.current = self.current, None
        if spec is not None and not spec.holds_for(start, conversation_version, config_version):
            spec.cancel()
            return None
        return spec

    def drop(self) -> None:
        spec, self.current = self.current, None
        if spec is not None:
            spec.cancel()
