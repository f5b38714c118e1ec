"""The inference tier with real models: the engine's /v1/audio endpoints, and an engine whose
STT and TTS are another engine's endpoints.

* openai-python's ``audio.speech.with_streaming_response.create`` (pcm) and
  ``audio.transcriptions.create`` against the engine: real Piper speech,
  transcribed back by real Whisper through the same API.
* A second engine built from the registry with ``stt=openai`` and
  ``tts=openai`` pointed at the first (its own VAD and LLM; no Whisper or
  Piper of its own) holds a spoken turn over WebSocket.
"""

from __future__ import annotations

import io
import time
import wave
from typing import Any

import numpy as np
import pytest
from openai import AsyncOpenAI

from parley.bench.speech import silence, synthesize
from parley.engine.config import EngineConfig, ModelConfig
from parley.engine.models.registry import ModelSet, load_stage
from parley.engine.models.stt_openai import OpenAICompatibleSTT
from parley.engine.models.tts_openai import OpenAICompatibleTTS
from parley.host.app import create_engine_app
from parley.host.runtime import EngineRuntime
from tests.engine.test_realtime_e2e import TRANSCRIPTION, connect, received_audio, transcribe_back
from tests.support.pacing import stream_pcm
from tests.support.servers import RunningServer, serve_app
from tests.support.text import char_similarity, recall

pytestmark = [pytest.mark.models]


def wav(pcm: np.ndarray, rate: int = 24000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return buf.getvalue()


async def test_openai_python_speaks_and_transcribes_with_the_engines_models(engine: RunningServer) -> None:
    client = AsyncOpenAI(api_key="local", base_url=f"{engine.http}/v1", max_retries=0)
    text = "The quick brown fox jumps over the lazy dog. Then it runs into the forest."
    pieces: list[tuple[float, bytes]] = []
    t0 = time.perf_counter()
    async with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=text, response_format="pcm"
    ) as response:
        async for chunk in response.iter_bytes():
            pieces.append((time.perf_counter() - t0, chunk))
    pcm = np.frombuffer(b"".join(p for _, p in pieces), dtype="<i2")
    seconds = len(pcm) / 24000
    assert 3.0 < seconds < 12.0, seconds
    first_ms, last_ms = pieces[0][0] * 1000, pieces[-1][0] * 1000
    # Streamed: the first sentence arrives before the second is synthesised.
    assert first_ms < last_ms * 0.8, (first_ms, last_ms)
    print(
        f"/v1/audio/speech pcm: {seconds:.1f} s of audio, first bytes {first_ms:.0f} ms, last {last_ms:.0f} ms"
    )
    heard = await client.audio.transcriptions.create(
        model="whisper-1", file=("speech.wav", wav(pcm), "audio/wav")
    )
    assert recall(text, heard.text) >= 0.8, heard.text
    # And speech from the test voice (not the engine's own), as a user would upload it.
    question = "What is the capital of France?"
    asked = await client.audio.transcriptions.create(
        model="whisper-1", file=("q.wav", wav(synthesize(question)), "audio/wav"), language="en"
    )
    assert recall(question, asked.text) >= 0.8, asked.text


async def test_an_engine_whose_stt_and_tts_are_another_engines_endpoints(
    engine: RunningServer, models: Any
) -> None:
    base_url = f"{engine.http}/v1"  # the inference node (loopback: no key needed)
    cfg = ModelConfig(stt="openai", stt_base_url=base_url, tts="openai", tts_base_url=base_url)
    stt = await load_stage("stt", cfg)  # the registry entries, warm-up included
    tts = await load_stage("tts", cfg)
    try:
        assert isinstance(stt.model, OpenAICompatibleSTT) and isinstance(tts.model, OpenAICompatibleTTS)
        assert stt.source.startswith(base_url) and tts.source.startswith(base_url)
        remote = ModelSet(vad=models.vad, stt=stt.model, llm=models.llm, tts=tts.model, turn=models.turn)
        runtime = EngineRuntime(EngineConfig(validate_events=True), models=remote)
        async with serve_app(create_engine_app(runtime)) as session_node:
            question = "What is the capital of France?"
            async with connect(session_node, **TRANSCRIPTION) as c:
                await stream_pcm(c.append, np.concatenate([silence(0.5), synthesize(question), silence(1.2)]))
                done = await c.log.wait_for("response.done", timeout=40)
                response = done["response"]
                assert response["status"] == "completed", response
                heard = (await c.log.wait_for("conversation.item.input_audio_transcription.completed"))[
                    "transcript"
                ]
                assert recall(question, heard) >= 0.8, heard
                transcript = c.log.of("response.output_audio_transcript.done")[0]["transcript"]
                audio = received_audio(c.log, response["id"])
                assert len(audio) > 24000 * 0.5
                back = await transcribe_back(models, audio)
                assert char_similarity(transcript, back) >= 0.7, (transcript, back)
    finally:
        await stt.entry.close(stt.model)
        await tts.entry.close(tts.model)
