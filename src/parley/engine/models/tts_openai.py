"""TTS backend for any OpenAI-compatible ``/v1/audio/speech`` that streams ``pcm``.

Another Parley engine (its own Piper), speaches, vLLM-style audio servers or
OpenAI itself speak; this node asks for ``response_format: "pcm"`` (24 kHz
16-bit little-endian mono) and reads the body as a stream, one request per
sentence or clause, so the first sentence plays while the server speaks the
next and a barge-in closes the open response mid-sentence (which is how such
servers learn to stop).

Such servers send audio only, no word timings: each chunk's words get the
chunk's voiced span shared out by their letter counts (the same fallback the
Piper backend uses when its voice lacks durations), which is what truncation
on barge-in needs to cut the transcript near the word that was heard.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import numpy as np

from parley.engine.models.base import SpeechChunk
from parley.engine.models.tts_piper import split_chunks
from parley.engine.models.word_align import proportional_timings

SAMPLE_RATE = 24_000  # OpenAI's pcm: 24 kHz, s16le, mono
_READ_BYTES = 4800  # 100 ms


class OpenAICompatibleTTS:
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        model: str | None,
        voice: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        from openai import AsyncOpenAI

        self.base_url = base_url
        self.model = model or "tts-1"
        self.voice = voice  # overrides the session's voice when set
        self._client = AsyncOpenAI(
            base_url=base_url, api_key=api_key or "not-needed", timeout=timeout, max_retries=1
        )

    def voices(self) -> list[str]:
        return [self.voice] if self.voice else ["alloy"]

    async def synthesize(
        self, text: str, *, voice: str | None = None, speed: float = 1.0
    ) -> AsyncGenerator[SpeechChunk, None]:
        for chunk in split_chunks(text):
            pcm = await self._speak(chunk, self.voice or voice or "alloy", speed)
            if len(pcm):
                words = proportional_timings(chunk, pcm, SAMPLE_RATE, _letters)
                yield SpeechChunk(pcm, SAMPLE_RATE, chunk, words)

    async def _speak(self, text: str, voice: str, speed: float) -> np.ndarray:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "voice": voice,
            "input": text,
            "response_format": "pcm",
        }
        if speed != 1.0:
            kwargs["speed"] = max(0.25, min(4.0, speed))
        data = bytearray()
        # Leaving this block (a finished chunk, or a cancelled reply) closes the response.
        async with self._client.audio.speech.with_streaming_response.create(**kwargs) as response:
            async for piece in response.iter_bytes(_READ_BYTES):
                data += piece
        usable = len(data) - len(data) % 2
        return np.frombuffer(bytes(data[:usable]), dtype="<i2").astype(np.int16)

    async def warmup(self) -> None:
        """One short request: proves the server is reachable and loads its voice."""
        await self._speak("Hello.", self.voice or "alloy", 1.0)

    async def close(self) -> None:
        await self._client.close()


def _letters(word: str) -> str:
    """A word's "phonemes" for sharing out its chunk's time: its letters."""
    return "".join(ch for ch in word.lower() if ch.isalnum())
