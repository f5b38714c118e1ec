"""A model stage that raises, returns garbage or hangs fails its reply, and the session goes on.

Each case runs through a real WebSocket against the engine with fake models, one
stage replaced by a faulty one; the reply ends ``status: "failed"`` with a reason
that names what went wrong, then the stage recovers and the next reply completes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from typing import Any

import pytest
import websockets

from parley.engine.models.base import ChatChunk, ChatRequest, SpeechChunk
from parley.host.app import create_engine_app
from tests.support.fakes import FakeLlm, FakeModels, FakeTts
from tests.support.serve import fake_runtime
from tests.support.servers import serve_app


class FaultyLlm(FakeLlm):
    mode = "ok"

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ChatChunk, None]:
        if self.mode == "raise":
            raise RuntimeError("the weights are corrupt")
        if self.mode == "hang":
            await asyncio.Event().wait()
        if self.mode == "garbage":
            yield "not a chunk"  # type: ignore[misc]
            return  # and no Finish either
        async for chunk in super().stream(request):
            yield chunk


class FaultyTts(FakeTts):
    mode = "ok"

    async def synthesize(
        self, text: str, *, voice: str | None = None, speed: float = 1.0
    ) -> AsyncGenerator[SpeechChunk, None]:
        if self.mode == "raise":
            raise RuntimeError("the voice failed to load")
        if self.mode == "hang":
            await asyncio.Event().wait()
        async for chunk in super().synthesize(text, voice=voice, speed=speed):
            yield chunk


async def _reply(ws: Any, modalities: list[str]) -> dict[str, Any]:
    await ws.send(
        json.dumps(
            {
                "type": "response.create",
                "response": {
                    "output_modalities": modalities,
                    "conversation": "none",
                    "input": [
                        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}
                    ],
                },
            }
        )
    )
    async with asyncio.timeout(10):
        while (event := json.loads(await ws.recv()))["type"] != "response.done":
            pass
    return event["response"]


@pytest.mark.parametrize(
    ("stage", "mode", "reason"),
    [
        ("llm", "raise", "the weights are corrupt"),
        ("llm", "hang", "the language model produced nothing for 0.5 s"),
        ("llm", "garbage", "without finishing"),
        ("tts", "raise", "the voice failed to load"),
        ("tts", "hang", "text-to-speech produced nothing for 0.5 s"),
    ],
)
async def test_a_faulty_stage_fails_the_reply_and_the_session_goes_on(
    stage: str, mode: str, reason: str
) -> None:
    llm, tts = FaultyLlm(), FaultyTts()
    runtime = fake_runtime(stage_timeout_seconds=0.5)
    runtime.models = FakeModels(llm=llm, tts=tts)
    faulty = llm if stage == "llm" else tts
    async with serve_app(create_engine_app(runtime)) as srv:
        async with websockets.connect(f"{srv.ws}/v1/realtime") as ws:
            faulty.mode = mode
            response = await _reply(ws, ["audio"])
            assert response["status"] == "failed", response
            error = response["status_details"]["error"]
            assert reason in error["message"], error
            faulty.mode = "ok"
            response = await _reply(ws, ["audio"])
            assert response["status"] == "completed", response
