"""The engine with real models, driven by the official clients over a real WebSocket.

Speech is synthesised at test time and streamed at real-time pace; every
server event is validated strictly against openai-python's types.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from openai import AsyncOpenAI

from parley.bench.speech import silence, synthesize
from parley.protocol.audio_formats import int16_to_float, resample
from tests.support.eventlog import EventLog
from tests.support.pacing import stream_pcm
from tests.support.servers import RunningServer
from tests.support.text import char_similarity, recall

pytestmark = [pytest.mark.models]


class Connection:
    """openai-python's realtime connection, with every raw event validated and logged."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.log = EventLog()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            while True:
                raw = await self.conn.recv_bytes()
                self.log.send(json.loads(raw))

    async def append(self, b64: str) -> None:
        await self.conn.input_audio_buffer.append(audio=b64)

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def connect(engine: RunningServer, **session: Any) -> AsyncIterator[Connection]:
    client = AsyncOpenAI(api_key="local", base_url=f"{engine.http}/v1", websocket_base_url=f"{engine.ws}/v1")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        c = Connection(conn)
        await c.log.wait_for("session.created")
        if session:
            await conn.session.update(session={"type": "realtime", **session})
            await c.log.wait_for("session.updated")
        try:
            yield c
        finally:
            await c.close()


def received_audio(log: EventLog, response_id: str) -> np.ndarray:
    data = b"".join(
        base64.b64decode(e["delta"])
        for e in log.of("response.output_audio.delta")
        if e["response_id"] == response_id
    )
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


async def transcribe_back(models: Any, pcm: np.ndarray) -> str:
    audio = int16_to_float(resample(pcm, 24000, models.stt.sample_rate))
    return (await models.stt.transcribe(audio, language="en")).text


TRANSCRIPTION = {"audio": {"input": {"transcription": {"model": "whisper-1"}}}}


async def test_openai_python_spoken_turn(engine: RunningServer, models: Any) -> None:
    question = "What is the capital of France?"
    async with connect(engine, **TRANSCRIPTION) as c:
        await stream_pcm(c.append, np.concatenate([silence(0.5), synthesize(question), silence(1.2)]))
        done = await c.log.wait_for("response.done", timeout=30)
        response = done["response"]
        assert response["status"] == "completed", response
        heard = (await c.log.wait_for("conversation.item.input_audio_transcription.completed"))["transcript"]
        assert recall(question, heard) >= 0.8, heard
        transcript = c.log.of("response.output_audio_transcript.done")[0]["transcript"]
        assert transcript.strip()
        audio = received_audio(c.log, response["id"])
        rms = float(np.sqrt(np.mean((audio.astype(np.float32) / 32768) ** 2)))
        assert len(audio) > 24000 * 0.5 and rms > 0.02
        back = await transcribe_back(models, audio)
        assert char_similarity(transcript, back) >= 0.8, (transcript, back)
        # The user item's id is the one speech_started promised.
        started = c.log.of("input_audio_buffer.speech_started")[0]
        assert c.log.of("input_audio_buffer.committed")[0]["item_id"] == started["item_id"]
        assert (
            started["audio_start_ms"]
            <= 500
            <= c.log.of("input_audio_buffer.speech_stopped")[0]["audio_end_ms"]
        )


async def test_scripted_barge_in_truncates_to_heard(engine: RunningServer, models: Any) -> None:
    async with connect(engine, instructions="You are a storyteller. Tell long, detailed stories.") as c:
        mic_task = asyncio.create_task(
            stream_pcm(
                c.append,
                np.concatenate(
                    [
                        silence(0.4),
                        synthesize("Tell me a long story about a dragon who lived in a castle."),
                        silence(0.8),
                    ]
                ),
            )
        )
        first = await c.log.wait_for("response.output_audio.delta", timeout=30)
        played_from = time.perf_counter()  # the client starts playing at the first delta
        response_id, item_id = first["response_id"], first["item_id"]
        await mic_task
        # Interrupt 1.2 s into playback.
        await asyncio.sleep(max(0.0, played_from + 1.2 - time.perf_counter()))
        mic_task = asyncio.create_task(
            stream_pcm(c.append, np.concatenate([synthesize("Stop, that is enough."), silence(1.0)]))
        )
        started = await c.log.wait_for(
            "input_audio_buffer.speech_started", start=c.log.index("response.output_audio.delta")
        )
        played_ms = int((time.perf_counter() - played_from) * 1000)
        received_ms = len(received_audio(c.log, response_id)) // 24
        audio_end_ms = min(played_ms, received_ms)
        await c.conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=audio_end_ms)
        done = await c.log.wait_for("response.done", where=lambda e: e["response"]["id"] == response_id)
        assert done["response"]["status"] == "cancelled", "the reply should still be generating at barge-in"
        assert done["response"]["status_details"]["reason"] == "turn_detected"
        assert c.log.index("input_audio_buffer.speech_started") < c.log.events.index(done)
        cut = c.log.events.index(done)
        assert not [
            e
            for e in c.log.events[cut + 1 :]
            if e.get("response_id") == response_id and e["type"].startswith("response.output")
        ]
        truncated = await c.log.wait_for("conversation.item.truncated")
        assert truncated["audio_end_ms"] == audio_end_ms
        generated = done["response"]["output"][0]["content"][0]["transcript"]
        await c.conn.conversation.item.retrieve(item_id=item_id)
        item = (await c.log.wait_for("conversation.item.retrieved"))["item"]
        kept = item["content"][0]["transcript"]
        assert kept and len(kept) < len(generated) and generated.startswith(kept.rstrip(".,!?"))
        assert len(base64.b64decode(item["content"][0]["audio"])) == audio_end_ms * 48
        # What was kept is what was heard: transcribing the played audio gives mostly those words
        # (loosely: Whisper is unreliable on a fragment cut mid-word).
        heard = await transcribe_back(models, received_audio(c.log, response_id)[: audio_end_ms * 24])
        assert recall(kept, heard) >= 0.5, (kept, heard)
        assert started["audio_start_ms"] > 0
        await mic_task
        second = await c.log.wait_for(
            "response.done", where=lambda e: e["response"]["id"] != response_id, timeout=30
        )
        assert second["response"]["status"] == "completed"


async def test_text_mode_forced_tool_call_and_continuation(engine: RunningServer) -> None:
    tools = [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Get the current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        }
    ]
    async with connect(
        engine,
        output_modalities=["text"],
        tools=tools,
        tool_choice={"type": "function", "name": "get_weather"},
    ) as c:
        await c.conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "What is the weather like in Paris?"}],
            }
        )
        await c.conn.response.create()
        done = await c.log.wait_for("response.done", timeout=30)
        call = done["response"]["output"][-1]
        assert (
            call["type"] == "function_call"
            and call["status"] == "completed"
            and call["name"] == "get_weather"
        )
        args = json.loads(call["arguments"])
        assert isinstance(args["city"], str) and args["city"]
        assert c.log.of("response.function_call_arguments.delta")
        await c.conn.conversation.item.create(
            item={
                "type": "function_call_output",
                "call_id": call["call_id"],
                "output": json.dumps({"temperature_c": 21, "sky": "sunny"}),
            }
        )
        await c.conn.response.create(response={"tool_choice": "none"})
        second = await c.log.wait_for(
            "response.done", where=lambda e: e["response"]["id"] != done["response"]["id"], timeout=30
        )
        assert second["response"]["status"] == "completed"
        text = second["response"]["output"][0]["content"][0]["text"]
        assert text.strip()


async def test_semantic_vad_ends_a_finished_turn(engine: RunningServer) -> None:
    td = {"type": "semantic_vad", "eagerness": "high"}
    async with connect(
        engine, audio={"input": {"turn_detection": td, "transcription": {"model": "whisper-1"}}}
    ) as c:
        await stream_pcm(
            c.append, np.concatenate([silence(0.4), synthesize("Who wrote Romeo and Juliet?"), silence(2.5)])
        )
        stopped = await c.log.wait_for("input_audio_buffer.speech_stopped", timeout=10)
        started = c.log.of("input_audio_buffer.speech_started")[0]
        # A finished question ends quickly (well under the 2 s maximum wait for "high").
        assert stopped["audio_end_ms"] - started["audio_start_ms"] < 4000
        done = await c.log.wait_for("response.done", timeout=30)
        assert done["response"]["status"] == "completed"


async def test_manual_turn_push_to_talk(engine: RunningServer) -> None:
    async with connect(
        engine, audio={"input": {"turn_detection": None, "transcription": {"model": "whisper-1"}}}
    ) as c:
        await stream_pcm(c.append, synthesize("How many legs does a spider have?"), realtime=False)
        await c.conn.input_audio_buffer.commit()
        await c.conn.response.create()
        done = await c.log.wait_for("response.done", timeout=30)
        assert done["response"]["status"] == "completed"
        assert not c.log.of("input_audio_buffer.speech_started")  # no VAD in manual mode
        heard = (await c.log.wait_for("conversation.item.input_audio_transcription.completed"))["transcript"]
        assert recall("How many legs does a spider have?", heard) >= 0.8
