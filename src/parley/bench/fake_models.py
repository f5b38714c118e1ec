"""Tiny stand-ins for the model stages, for tests of orchestration and the protocol fuzzer.

Features are proven with the real models elsewhere; these make the session's
event logic fast and deterministic to test (``tests/support/fakes.py`` re-exports
them) and let ``parley bench fuzz`` push 100,000 events through in minutes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from parley.engine.models.base import (
    ChatChunk,
    ChatRequest,
    Finish,
    SpeechChunk,
    TextDelta,
    ToolCallDelta,
    Transcript,
    WordTiming,
)

MAX_KEPT_REQUESTS = 1000


class EnergyVadStream:
    def __call__(self, frame: np.ndarray) -> float:
        return 0.95 if float(np.sqrt(np.mean(frame**2))) > 0.02 else 0.02

    def reset(self) -> None:
        pass


class FakeVad:
    sample_rate = 16000
    frame_samples = 512

    def stream(self) -> EnergyVadStream:
        return EnergyVadStream()


class FakeStt:
    sample_rate = 16000

    def __init__(self, text: str = "What is the capital of France?") -> None:
        self.text = text
        self.calls = 0
        self.last_options: dict[str, Any] = {}
        self.last_audio: np.ndarray | None = None

    async def transcribe(
        self,
        audio: np.ndarray,
        *,
        language: str | None = None,
        prompt: str | None = None,
        languages: Sequence[str] | None = None,
    ) -> Transcript:
        self.calls += 1
        self.last_options = {"language": language, "prompt": prompt, "languages": languages}
        self.last_audio = audio
        await asyncio.sleep(0.01)
        detected = language or (languages[0] if languages else "en")
        return Transcript(self.text, detected, len(audio) / self.sample_rate, 0.01)


def _keep(log: list[Any], entry: Any) -> None:
    """Record for tests, which read the latest entries; a soak or fuzz run makes 10^5 of them."""
    log.append(entry)
    if len(log) > MAX_KEPT_REQUESTS:
        del log[: len(log) - MAX_KEPT_REQUESTS]


@dataclass
class FakeLlm:
    reply: str = "The capital of France is Paris. It is a lovely city on the Seine."
    token_delay: float = 0.002
    fail: bool = False
    name: str = "fake"
    decides_tools: bool = True
    requests: list[ChatRequest] = field(default_factory=list)
    prefills: list[ChatRequest] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)

    async def prefill(self, request: ChatRequest) -> int:
        _keep(self.prefills, request)
        return 0

    def forget(self, key: str) -> None:
        _keep(self.forgotten, key)

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ChatChunk, None]:
        _keep(self.requests, request)
        if self.fail:
            raise RuntimeError("the fake model broke")
        if request.tool_choice.mode in ("function", "required") and request.tools:
            name = request.tool_choice.name or request.tools[0].name
            args = json.dumps({"city": "Paris"})
            yield ToolCallDelta(0, call_id="call_fake123", name=name)
            for i in range(0, len(args), 5):
                await asyncio.sleep(self.token_delay)
                yield ToolCallDelta(0, arguments=args[i : i + 5])
            yield Finish("tool_calls", 10, 5)
            return
        words = self.reply.split(" ")
        limit = request.max_tokens or len(words)
        for i, word in enumerate(words[:limit]):
            await asyncio.sleep(self.token_delay)
            yield TextDelta(("" if i == 0 else " ") + word)
        yield Finish("length" if limit < len(words) else "stop", 12, min(limit, len(words)))


class FakeTts:
    sample_rate = 22050
    word_seconds = 0.25

    def voices(self) -> list[str]:
        return ["fake"]

    async def synthesize(
        self, text: str, *, voice: str | None = None, speed: float = 1.0
    ) -> AsyncGenerator[SpeechChunk, None]:
        await asyncio.sleep(0.005)
        words = text.split()
        n = int(len(words) * self.word_seconds * self.sample_rate)
        t = np.arange(n) / self.sample_rate
        audio = (np.sin(2 * np.pi * 220 * t) * 8000).astype(np.int16)
        timings = [
            WordTiming(w, i * self.word_seconds, (i + 1) * self.word_seconds) for i, w in enumerate(words)
        ]
        yield SpeechChunk(audio, self.sample_rate, text, timings)


@dataclass
class FakeModels:
    vad: FakeVad = field(default_factory=FakeVad)
    stt: FakeStt = field(default_factory=FakeStt)
    llm: FakeLlm = field(default_factory=FakeLlm)
    tts: FakeTts = field(default_factory=FakeTts)

    def describe(self) -> dict[str, str]:
        return {"vad": "fake", "stt": "fake", "llm": "fake", "tts": "fake"}
