"""OpenAI-compatible audio endpoints served from the engine's own models.

* ``POST /v1/audio/transcriptions`` (multipart: ``file``, ``model``, ``language``,
  ``prompt``, ``response_format`` json | text | verbose_json): the loaded STT
  (Whisper) transcribes any audio file FFmpeg reads.
* ``POST /v1/audio/speech`` (JSON: ``model``, ``input``, ``voice``,
  ``response_format`` pcm | wav | mp3 | opus | aac | flac, ``speed``): the
  loaded TTS (Piper) speaks, streamed sentence by sentence as it is made;
  ``pcm`` is 24 kHz 16-bit little-endian mono, as OpenAI's.

So a Parley engine is the inference node of other Parley nodes (their
``--stt openai`` / ``--tts openai`` backends point here), and anyone gets an
OpenAI-compatible local audio API: openai-python's
``client.audio.transcriptions.create`` and
``client.audio.speech.with_streaming_response.create`` work against it.
``model`` is accepted whatever it names (there is one model per stage); so is
``voice``. These calls need the engine key (loopback without one), never an
``ek_`` secret, which opens one realtime session and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile

from parley.host.runtime import EngineRuntime
from parley.httpapi import bearer_token, openai_error
from parley.media.audio_files import (
    SPEECH_FORMATS,
    SPEECH_RATE,
    AudioDecodeError,
    SpeechEncoder,
    decode_audio,
)
from parley.protocol.audio_formats import resample

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 25 * 1024 * 1024  # OpenAI's own limit
MAX_SPEECH_CHARS = 4096  # likewise
TRANSCRIPTION_FORMATS = ("json", "text", "verbose_json")


class AudioApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param

    def response(self) -> JSONResponse:
        type_ = "invalid_request_error" if self.status < 500 else "server_error"
        return JSONResponse(openai_error(self.message, type_, self.code, self.param), status_code=self.status)


def audio_router(runtime: EngineRuntime) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        try:
            _authorize(runtime, request)
            form = await _read_form(request)
            return await _transcribe(runtime, form)
        except AudioApiError as err:
            return err.response()

    @router.post("/v1/audio/speech")
    async def speech(request: Request) -> Response:
        try:
            _authorize(runtime, request)
            body = await _read_json(request)
            return await _speak(runtime, body)
        except AudioApiError as err:
            return err.response()

    return router


def _authorize(runtime: EngineRuntime, request: Request) -> None:
    client = request.client.host if request.client else None
    auth = runtime.auth.check(bearer_token(request.headers.get("authorization")), client)
    if not auth.ok:
        raise AudioApiError(auth.status, auth.message, auth.code)
    if not auth.is_engine_key:
        raise AudioApiError(403, "The audio API needs the engine key, not an ephemeral key.", "forbidden")
    if runtime.models is None:
        raise AudioApiError(503, "The engine is still loading its models.", "engine_loading")


# --------------------------------------------------------------- transcriptions


async def _read_form(request: Request) -> dict[str, Any]:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_UPLOAD_BYTES:
        raise AudioApiError(
            413, f"The upload is larger than {MAX_UPLOAD_BYTES // 2**20} MB.", "file_too_large"
        )
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "multipart/form-data":
        raise AudioApiError(
            415, "Send the audio as multipart/form-data with a 'file' part.", "unsupported_media_type"
        )
    fields: dict[str, Any] = {}
    try:
        async with request.form(max_files=1, max_fields=32) as form:
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    data = await value.read(MAX_UPLOAD_BYTES + 1)
                    if len(data) > MAX_UPLOAD_BYTES:
                        raise AudioApiError(
                            413,
                            f"The upload is larger than {MAX_UPLOAD_BYTES // 2**20} MB.",
                            "file_too_large",
                        )
                    fields[key] = data
                elif key.endswith("[]"):  # include[], timestamp_granularities[]
                    fields.setdefault(key, []).append(value)
                else:
                    fields[key] = value
    except AudioApiError:
        raise
    except Exception as exc:  # malformed multipart
        raise AudioApiError(400, f"The multipart body could not be read: {exc}", "invalid_request") from None
    return fields


async def _transcribe(runtime: EngineRuntime, form: dict[str, Any]) -> Response:
    assert runtime.models is not None
    data = form.get("file")
    if not isinstance(data, bytes):
        raise AudioApiError(400, "Missing the 'file' part (the audio to transcribe).", "missing_file", "file")
    if str(form.get("stream", "false")).lower() == "true":
        raise AudioApiError(
            400, "Streamed transcription is not supported; omit 'stream'.", "unsupported_value", "stream"
        )
    response_format = str(form.get("response_format") or "json")
    if response_format not in TRANSCRIPTION_FORMATS:
        raise AudioApiError(
            400,
            f"Unsupported response_format '{response_format}'; use one of {', '.join(TRANSCRIPTION_FORMATS)}.",
            "unsupported_value",
            "response_format",
        )
    stt = runtime.models.stt
    try:
        audio = await asyncio.to_thread(decode_audio, data, stt.sample_rate)
    except AudioDecodeError as exc:
        raise AudioApiError(
            400, f"The file is not audio this server can read: {exc}", "invalid_file", "file"
        ) from None
    language = str(form.get("language") or "").strip() or None
    prompt = str(form.get("prompt") or "").strip() or None
    try:
        result = await stt.transcribe(audio, language=language, prompt=prompt)
    except Exception as exc:
        log.exception("transcription failed")
        raise AudioApiError(500, f"Transcription failed: {exc}", "transcription_failed") from None
    seconds = round(len(audio) / stt.sample_rate, 3)
    if response_format == "text":
        return PlainTextResponse(result.text + "\n")
    if response_format == "verbose_json":
        return JSONResponse(
            {
                "task": "transcribe",
                "language": result.language or language or "",
                "duration": seconds,
                "text": result.text,
                "segments": [],
                "usage": {"type": "duration", "seconds": seconds},
            }
        )
    return JSONResponse({"text": result.text, "usage": {"type": "duration", "seconds": seconds}})


# ----------------------------------------------------------------------- speech


async def _read_json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > 64 * 1024:
        raise AudioApiError(413, "The request body is too large.", "request_too_large")
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError:
        raise AudioApiError(400, "The request body is not valid JSON.", "invalid_json") from None
    if not isinstance(body, dict):
        raise AudioApiError(400, "The request body must be a JSON object.", "invalid_json")
    return body


async def _speak(runtime: EngineRuntime, body: dict[str, Any]) -> Response:
    assert runtime.models is not None
    text = body.get("input")
    if not isinstance(text, str) or not text.strip():
        raise AudioApiError(400, "'input' must be non-empty text.", "invalid_value", "input")
    if len(text) > MAX_SPEECH_CHARS:
        raise AudioApiError(
            400,
            f"'input' is {len(text)} characters; the limit is {MAX_SPEECH_CHARS}.",
            "input_too_long",
            "input",
        )
    response_format = body.get("response_format") or "mp3"  # OpenAI's default
    if response_format not in SPEECH_FORMATS:
        raise AudioApiError(
            400,
            f"Unsupported response_format {response_format!r}; use one of {', '.join(SPEECH_FORMATS)}.",
            "unsupported_value",
            "response_format",
        )
    if (body.get("stream_format") or "audio") != "audio":
        raise AudioApiError(
            400, "Only stream_format 'audio' is supported.", "unsupported_value", "stream_format"
        )
    speed = body.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
        raise AudioApiError(400, "'speed' must be a number from 0.25 to 4.0.", "invalid_value", "speed")
    voice = body.get("voice")
    if isinstance(voice, dict):  # {"id": "voice_…"} custom voices: there is one voice here
        voice = voice.get("id")
    tts = runtime.models.tts
    encoder = SpeechEncoder(response_format)

    async def stream() -> AsyncIterator[bytes]:
        try:
            async with contextlib.aclosing(
                tts.synthesize(text, voice=voice if isinstance(voice, str) else None, speed=float(speed))
            ) as chunks:
                async for chunk in chunks:
                    pcm = resample(chunk.audio, chunk.sample_rate, SPEECH_RATE)
                    if pcm.dtype != "int16":
                        pcm = pcm.round().clip(-32768, 32767).astype("int16")
                    data = encoder.push(pcm)
                    if data:
                        yield data
            tail = encoder.finish()
            if tail:
                yield tail
        finally:
            encoder.close()  # the client went away mid-stream: release the muxer

    return StreamingResponse(
        stream(),
        media_type=encoder.media_type,
        headers={"Cache-Control": "no-store", "X-Sample-Rate": str(SPEECH_RATE)},
    )
