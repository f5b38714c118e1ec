"""One reply being generated: LLM → clause chunker → TTS, ahead of the events that report it.

A :class:`Generation` runs as its own task and delivers an ordered stream of
outputs (text deltas, spoken clauses, tool-call deltas, then one ``Finish``)
through a queue. It knows nothing about the protocol, which is what lets the
session start one speculatively, before the user's turn is confirmed, and
hand it to a response later, or drop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from parley.engine.chunker import ClauseChunker
from parley.engine.models.base import (
    ChatRequest,
    Finish,
    LanguageModel,
    TextDelta,
    TextToSpeech,
    ToolCallDelta,
    WordTiming,
)
from parley.engine.models.priority import PRIORITY
from parley.protocol.audio_formats import CANONICAL_RATE, resample


@dataclass
class SpokenClause:
    text: str
    audio: np.ndarray  # canonical int16, 24 kHz
    words: list[WordTiming]  # seconds from the clause's first sample


@dataclass
class GenerationFailed:
    error: BaseException


Output = TextDelta | ToolCallDelta | SpokenClause | Finish | GenerationFailed


@dataclass
class StageTimes:
    """perf_counter() stamps of the pipeline's milestones (None until reached)."""

    started: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    first_clause: float | None = None
    first_audio: float | None = None


T = TypeVar("T")

# A later clause's synthesis becomes urgent (the LLM pauses for it) when less than this much
# of the reply is left to play: a gap would otherwise open in what the listener hears.
RUNNING_DRY_S = 1.5


class StageTimeout(RuntimeError):
    """A model stage went silent for longer than its deadline."""


async def _within(stream: AsyncIterator[T], seconds: float, what: str) -> AsyncIterator[T]:
    """``stream``'s items, each within ``seconds`` of the one before, else :class:`StageTimeout`."""
    while True:
        try:
            async with asyncio.timeout(seconds):
                item = await anext(stream)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise StageTimeout(f"{what} produced nothing for {seconds:g} s") from None
        yield item


class Generation:
    def __init__(
        self,
        llm: LanguageModel,
        tts: TextToSpeech | None,
        request: ChatRequest,
        *,
        voice: str | None = None,
        speed: float = 1.0,
        stage_timeout: float = 60.0,
    ) -> None:
        self.llm, self.tts, self.request = llm, tts, request
        self.voice, self.speed = voice, speed
        # A hung stage fails the reply (status "failed", the stage named) instead of holding the
        # session's one active response for ever.
        self.stage_timeout = stage_timeout
        self.times = StageTimes()
        self._out: asyncio.Queue[Output] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._audio_s = 0.0  # seconds of speech synthesised so far

    @property
    def audio(self) -> bool:
        return self.tts is not None

    def start(self) -> Generation:
        self._task = asyncio.create_task(self._run(), name="generation")
        return self

    def cancel(self) -> None:
        if self._task and not self._task.done():
            self._task.cancel()

    async def outputs(self) -> AsyncIterator[Output]:
        while True:
            item = await self._out.get()
            yield item
            if isinstance(item, Finish | GenerationFailed):
                return

    async def _run(self) -> None:
        try:
            if self.tts is None:
                await self._run_text()
            else:
                await self._run_spoken()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a model failure fails this reply, nothing else
            self._out.put_nowait(GenerationFailed(exc))

    async def _run_text(self) -> None:
        async with contextlib.aclosing(self.llm.stream(self.request)) as stream:
            async for chunk in _within(stream, self.stage_timeout, "the language model"):
                if isinstance(chunk, TextDelta | ToolCallDelta) and self.times.first_token is None:
                    self.times.first_token = time.perf_counter()
                self._out.put_nowait(chunk)
                if isinstance(chunk, Finish):
                    return
        raise RuntimeError("the language model stream ended without finishing")

    async def _run_spoken(self) -> None:
        # Clauses, tool deltas and the finish go through one queue so the TTS
        # stage can keep them in order while the LLM runs ahead.
        staged: asyncio.Queue[str | ToolCallDelta | Finish | None] = asyncio.Queue()
        speaker = asyncio.create_task(self._speak(staged), name="tts")
        try:
            chunker = ClauseChunker()
            finished = False
            async with contextlib.aclosing(self.llm.stream(self.request)) as stream:
                async for chunk in _within(stream, self.stage_timeout, "the language model"):
                    if isinstance(chunk, TextDelta):
                        if self.times.first_token is None:
                            self.times.first_token = time.perf_counter()
                        for clause in chunker.push(chunk.text):
                            if self.times.first_clause is None:
                                self.times.first_clause = time.perf_counter()
                            staged.put_nowait(clause)
                    elif isinstance(chunk, ToolCallDelta):
                        if self.times.first_token is None:
                            self.times.first_token = time.perf_counter()
                        for clause in chunker.flush():
                            staged.put_nowait(clause)
                        staged.put_nowait(chunk)
                    elif isinstance(chunk, Finish):
                        for clause in chunker.flush():
                            if self.times.first_clause is None:
                                self.times.first_clause = time.perf_counter()
                            staged.put_nowait(clause)
                        staged.put_nowait(chunk)
                        finished = True
                        break
            if not finished:
                raise RuntimeError("the language model stream ended without finishing")
            await speaker
        finally:
            if not speaker.done():
                speaker.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await speaker

    async def _speak(self, staged: asyncio.Queue[str | ToolCallDelta | Finish | None]) -> None:
        assert self.tts is not None
        try:
            while True:
                entry = await staged.get()
                if isinstance(entry, str):
                    await self._synthesize(entry)
                    continue
                self._out.put_nowait(entry)  # type: ignore[arg-type]
                if isinstance(entry, Finish):
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._out.put_nowait(GenerationFailed(exc))

    async def _synthesize(self, text: str) -> None:
        assert self.tts is not None
        pieces: list[np.ndarray] = []
        words: list[WordTiming] = []
        offset = 0.0
        # The first clause is what the listener is waiting for, and so is the next one when
        # what has been synthesised so far is about to run out: the LLM pauses meanwhile.
        urgent = self.times.first_audio is None or self._audio_ahead_s() < RUNNING_DRY_S
        with PRIORITY.urgent() if urgent else contextlib.nullcontext():
            async with contextlib.aclosing(
                self.tts.synthesize(text, voice=self.voice, speed=self.speed)
            ) as chunks:
                async for chunk in _within(chunks, self.stage_timeout, "text-to-speech"):
                    audio = resample(chunk.audio, chunk.sample_rate, CANONICAL_RATE).astype(np.int16)
                    pieces.append(audio)
                    words.extend(WordTiming(w.text, w.start + offset, w.end + offset) for w in chunk.words)
                    offset += len(audio) / CANONICAL_RATE
        if not pieces:
            return
        if self.times.first_audio is None:
            self.times.first_audio = time.perf_counter()
        self._audio_s += offset
        self._out.put_nowait(SpokenClause(text, np.concatenate(pieces), words))

    def _audio_ahead_s(self) -> float:
        """Seconds of synthesised audio not yet played, if playback started with the first audio."""
        if self.times.first_audio is None:
            return 0.0
        return self._audio_s - (time.perf_counter() - self.times.first_audio)
