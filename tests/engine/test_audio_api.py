"""The engine's OpenAI-compatible audio endpoints with fake models: shapes, formats, bad input, auth.

Real Whisper and Piper behind the same endpoints are in test_inference_tier.py.
"""

from __future__ import annotations

import io
import wave

import httpx
import numpy as np
import pytest
from openai import AsyncOpenAI, AuthenticationError, BadRequestError

from parley.host.app import create_engine_app
from parley.media.audio_files import decode_audio
from tests.support.serve import fake_runtime
from tests.support.servers import serve_app

KEY = "engine-key-audio"


def tone_wav(seconds: float = 1.0, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (np.sin(2 * np.pi * 300 * t) * 8000).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


async def test_openai_python_against_the_audio_endpoints() -> None:
    runtime = fake_runtime(api_key=KEY)
    async with serve_app(create_engine_app(runtime)) as srv:
        client = AsyncOpenAI(api_key=KEY, base_url=f"{srv.http}/v1", max_retries=0)
        result = await client.audio.transcriptions.create(
            model="whisper-1", file=("q.wav", tone_wav(), "audio/wav")
        )
        assert result.text == "What is the capital of France?"
        assert runtime.models is not None and runtime.models.stt.calls == 1  # type: ignore[attr-defined]
        heard = runtime.models.stt.last_audio  # type: ignore[attr-defined]
        assert heard is not None and abs(len(heard) - 16000) < 400  # decoded and resampled to 16 kHz
        verbose = await client.audio.transcriptions.create(
            model="whisper-1",
            file=("q.wav", tone_wav(), "audio/wav"),
            response_format="verbose_json",
            language="en",
        )
        assert verbose.text == result.text and verbose.duration == pytest.approx(1.0, abs=0.05)
        text = await client.audio.transcriptions.create(
            model="whisper-1", file=("q.wav", tone_wav(), "audio/wav"), response_format="text"
        )
        assert str(text).strip() == result.text
        # Speech, streamed as raw PCM: 24 kHz 16-bit mono (the fake TTS speaks 0.25 s a word).
        pcm = b""
        async with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input="One two three four.", response_format="pcm"
        ) as response:
            assert response.headers["content-type"].startswith("audio/pcm")
            async for chunk in response.iter_bytes():
                pcm += chunk
        assert len(pcm) == pytest.approx(4 * 0.25 * 24000 * 2, rel=0.02)
        for fmt in ("wav", "mp3", "opus", "aac", "flac"):
            speech = await client.audio.speech.create(
                model="tts-1", voice="alloy", input="One two three four.", response_format=fmt
            )
            seconds = len(decode_audio(speech.content, 24000)) / 24000
            assert seconds == pytest.approx(1.0, abs=0.1), fmt


async def test_bad_input_and_auth() -> None:
    runtime = fake_runtime(api_key=KEY)
    async with serve_app(create_engine_app(runtime)) as srv:
        client = AsyncOpenAI(api_key=KEY, base_url=f"{srv.http}/v1", max_retries=0)
        with pytest.raises(BadRequestError) as bad:
            await client.audio.transcriptions.create(
                model="whisper-1", file=("x.wav", b"not audio at all", "audio/wav")
            )
        assert bad.value.code == "invalid_file"
        with pytest.raises(BadRequestError) as bad:
            await client.audio.speech.create(model="tts-1", voice="alloy", input="Hi", response_format="ogg")  # type: ignore[arg-type]
        assert bad.value.code == "unsupported_value"
        with pytest.raises(BadRequestError):
            await client.audio.speech.create(model="tts-1", voice="alloy", input="  ")
        with pytest.raises(BadRequestError):
            await client.audio.speech.create(model="tts-1", voice="alloy", input="Hi", speed=9)
        wrong = AsyncOpenAI(api_key="wrong", base_url=f"{srv.http}/v1", max_retries=0)
        with pytest.raises(AuthenticationError):
            await wrong.audio.speech.create(model="tts-1", voice="alloy", input="Hi")
        async with httpx.AsyncClient(base_url=srv.http, headers={"Authorization": f"Bearer {KEY}"}) as http:
            secret = (await http.post("/v1/realtime/client_secrets", json={})).json()["value"]
            r = await http.post(
                "/v1/audio/speech",
                json={"model": "tts-1", "voice": "alloy", "input": "Hi"},
                headers={"Authorization": f"Bearer {secret}"},
            )
            assert (
                r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
            )  # ek_ opens sessions only
            r = await http.post("/v1/audio/transcriptions", json={"file": "x"})
            assert r.status_code == 415
            r = await http.post("/v1/audio/transcriptions", files={"model": (None, "whisper-1")})
            assert r.status_code == 400 and r.json()["error"]["param"] == "file"
