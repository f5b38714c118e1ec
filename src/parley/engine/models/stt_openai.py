"""STT backend for any OpenAI-compatible ``/v1/audio/transcriptions``.

Another Parley engine (its own Whisper), speaches, vLLM or OpenAI itself
carries the transcription; this node only sends the turn's audio, as a 16 kHz
16-bit WAV (what every such server reads), through openai-python.
``languages`` (detect among several) has no counterpart in that API: one
allowed language is sent as ``language``, several leave detection to the server.
"""

from __future__ import annotations

import io
import time
import wave
from collections.abc import Sequence

import numpy as np

from parley.engine.models.base import Transcript

SAMPLE_RATE = 16_000


def wav_bytes(audio: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    """float32 mono in [-1, 1] → a 16-bit PCM WAV file."""
    pcm = (np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


class OpenAICompatibleSTT:
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        model: str | None,
        language: str | None = "en",
        timeout: float = 30.0,
    ) -> None:
        from openai import AsyncOpenAI

        self.base_url = base_url
        self.model = model or "whisper-1"
        self.language = language
        # Local servers need no key, but the client insists on one.
        self._client = AsyncOpenAI(
            base_url=base_url, api_key=api_key or "not-needed", timeout=timeout, max_retries=1
        )

    async def transcribe(
        self,
        audio: np.ndarray,
        *,
        language: str | None = None,
        prompt: str | None = None,
        languages: Sequence[str] | None = None,
    ) -> Transcript:
        started = time.perf_counter()
        allowed = [code for code in languages or () if code]
        if language is None:
            language = allowed[0] if len(allowed) == 1 else (None if allowed else self.language)
        seconds = len(audio) / SAMPLE_RATE
        kwargs: dict[str, object] = {"model": self.model, "file": ("turn.wav", wav_bytes(audio), "audio/wav")}
        if language:
            kwargs["language"] = language
        if prompt:
            kwargs["prompt"] = prompt
        result = await self._client.audio.transcriptions.create(**kwargs)  # type: ignore[call-overload]
        text = result if isinstance(result, str) else result.text
        return Transcript(
            text=text.strip(),
            language=language,
            audio_seconds=seconds,
            elapsed_seconds=time.perf_counter() - started,
        )

    async def warmup(self) -> None:
        """One short request: proves the server is reachable and loads its model."""
        t = np.arange(int(0.5 * SAMPLE_RATE)) / SAMPLE_RATE
        await self.transcribe((0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32))

    async def close(self) -> None:
        await self._client.close()
