"""``parley serve`` with the embedded engine and real models, driven as a browser and as openai-python would.

* WebRTC with aiortc: speech in over Opus, the user transcript, the spoken reply
  over RTP (transcribed back), and a barge-in that clears the output buffer and
  truncates the reply.
* openai-python through the WebSocket relay: a spoken turn, then a spoken
  question answered with a server tool the relay runs.

Speech is synthesised at test time; every server event is validated strictly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import httpx
import numpy as np
import pytest
from openai import AsyncOpenAI

from parley.bench.speech import silence, synthesize
from parley.protocol.audio_formats import int16_to_float, resample
from tests.server.rtc_client import RtcClient
from tests.support.eventlog import EventLog
from tests.support.pacing import stream_pcm
from tests.support.serve import Serve
from tests.support.text import recall, similar

pytestmark = [pytest.mark.models]

TRANSCRIPTION = {"transcription": {"model": "whisper-1"}}


async def transcribe(models: Any, pcm: np.ndarray, rate: int) -> str:
    audio = int16_to_float(resample(pcm, rate, models.stt.sample_rate))
    return (await models.stt.transcribe(audio, language="en")).text


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pcm.astype(np.float32) / 32768) ** 2))) if len(pcm) else 0.0


async def test_webrtc_spoken_turn_and_barge_in_through_serve(serve: Serve, models: Any) -> None:
    async with httpx.AsyncClient(base_url=serve.http) as http:
        r = await http.post("/api/session", json={"session": {"audio": {"input": TRANSCRIPTION}}})
        assert r.status_code == 200, r.text
        secret = r.json()["value"]
    client = RtcClient()
    log = client.events
    try:
        r = await client.connect(f"{serve.http}/api/realtime/calls", secret)
        assert r.status_code == 201, r.text
        await log.wait_for("session.created")

        # 1. A spoken question in over Opus; the user transcript; the spoken reply over RTP.
        question = "What is the capital of France?"
        client.mic.play(np.concatenate([silence(0.6), synthesize(question), silence(1.5)]))
        done = await log.wait_for("response.done", timeout=45)
        response = done["response"]
        assert response["status"] == "completed", response
        heard = (await log.wait_for("conversation.item.input_audio_transcription.completed", timeout=20))[
            "transcript"
        ]
        assert recall(question, heard) >= 0.8, heard
        transcript = response["output"][0]["content"][0]["transcript"]
        assert transcript.strip()
        started = await log.wait_for(
            "output_audio_buffer.started", lambda e: e["response_id"] == response["id"]
        )
        stopped = await log.wait_for(
            "output_audio_buffer.stopped", lambda e: e["response_id"] == response["id"], timeout=30
        )
        t0, t1 = log.times[log.events.index(started)], log.times[log.events.index(stopped)]
        reply = np.concatenate([a for t, a in client.audio if t0 - 0.1 <= t <= t1 + 0.3])
        assert rms(reply) > 0.02, "no reply audio arrived over RTP"
        back = await transcribe(models, reply, 48000)
        assert similar(transcript, back, 0.6), (transcript, back)

        # 2. Barge-in: interrupt a long reply while it plays.
        client.send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "instructions": "You are a storyteller. Tell long, detailed stories.",
                },
            }
        )
        await log.wait_for("session.updated")
        mark = len(log.events)
        client.mic.play(
            np.concatenate(
                [
                    silence(0.3),
                    synthesize("Tell me a long story about a dragon who lived in a castle."),
                    silence(1.2),
                ]
            )
        )
        playing = await log.wait_for("output_audio_buffer.started", timeout=45, start=mark)
        story_id = playing["response_id"]
        await asyncio.sleep(1.2)
        interrupt_at = len(log.events)
        client.mic.play(np.concatenate([synthesize("Stop, that is enough."), silence(1.0)]))
        await log.wait_for("input_audio_buffer.speech_started", timeout=10, start=interrupt_at)
        cleared = await log.wait_for("output_audio_buffer.cleared", timeout=10, start=interrupt_at)
        assert cleared["response_id"] == story_id
        truncated = await log.wait_for("conversation.item.truncated", timeout=10, start=interrupt_at)
        story_done = await log.wait_for(
            "response.done", lambda e: e["response"]["id"] == story_id, timeout=30
        )
        story_item = story_done["response"]["output"][0]
        assert truncated["item_id"] == story_item["id"]
        assert 500 <= truncated["audio_end_ms"] <= 6000, truncated
        # Silence on the wire soon after the clear.
        t_clear = log.times[log.events.index(cleared)]
        after = np.concatenate(
            [a for t, a in client.audio if t_clear + 0.3 <= t <= t_clear + 0.8] or [np.zeros(1)]
        )
        assert rms(after) < 0.01, "assistant audio kept playing after output_audio_buffer.cleared"
        assert not log.of("error"), log.of("error")
    finally:
        await client.close()


class Conn:
    """openai-python's connection with every raw event validated into an EventLog."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.log = EventLog()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            while True:
                self.log.send(json.loads(await self.conn.recv_bytes()))

    async def append(self, b64: str) -> None:
        await self.conn.input_audio_buffer.append(audio=b64)

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def reply_audio(log: EventLog, response_id: str) -> np.ndarray:
    import base64

    data = b"".join(
        base64.b64decode(e["delta"])
        for e in log.of("response.output_audio.delta")
        if e["response_id"] == response_id
    )
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


async def test_openai_python_spoken_turn_and_server_tool_through_relay(serve: Serve, models: Any) -> None:
    client = AsyncOpenAI(
        api_key="not-needed", base_url=f"{serve.http}/api/v1", websocket_base_url=f"{serve.ws}/api/v1"
    )
    async with client.realtime.connect(model="gpt-realtime") as raw:
        c = Conn(raw)
        try:
            created = await c.log.wait_for("session.created")
            assert "get_current_time" in {t["name"] for t in created["session"]["tools"]}
            await raw.session.update(session={"type": "realtime", "audio": {"input": TRANSCRIPTION}})
            await c.log.wait_for("session.updated")

            # A spoken turn.
            question = "What is the capital of France?"
            await stream_pcm(c.append, np.concatenate([silence(0.5), synthesize(question), silence(1.2)]))
            done = await c.log.wait_for("response.done", timeout=45)
            assert done["response"]["status"] == "completed"
            heard = (await c.log.wait_for("conversation.item.input_audio_transcription.completed"))[
                "transcript"
            ]
            assert recall(question, heard) >= 0.8, heard
            transcript = done["response"]["output"][0]["content"][0]["transcript"]
            audio = reply_audio(c.log, done["response"]["id"])
            assert len(audio) > 24000 * 0.5 and rms(audio) > 0.02
            assert similar(transcript, await transcribe(models, audio, 24000), 0.6)

            # A spoken question the server answers with its own tool (forced, so a 135M model calls it).
            mark = len(c.log.events)
            await raw.session.update(
                session={"type": "realtime", "tool_choice": {"type": "function", "name": "get_current_time"}}
            )
            await c.log.wait_for("session.updated", start=mark)
            t_ask = time.perf_counter()
            await stream_pcm(
                c.append, np.concatenate([synthesize("What time is it in Tokyo?"), silence(1.2)])
            )
            call = await c.log.wait_for(
                "response.output_item.done",
                lambda e: e["item"]["type"] == "function_call",
                timeout=45,
                start=mark,
            )
            assert call["item"]["name"] == "get_current_time"
            output = await c.log.wait_for(
                "conversation.item.done", lambda e: e["item"]["type"] == "function_call_output", start=mark
            )
            assert output["item"]["call_id"] == call["item"]["call_id"]
            result = json.loads(output["item"]["output"])
            assert "time" in result or "error" in result, result
            spoken = await c.log.wait_for(
                "response.done",
                lambda e: e["response"]["output"] and e["response"]["output"][0]["type"] == "message",
                timeout=45,
                start=mark,
            )
            assert spoken["response"]["status"] == "completed"
            assert len(reply_audio(c.log, spoken["response"]["id"])) > 0
            assert time.perf_counter() - t_ask < 60
            assert not [e for e in c.log.of("error")], c.log.of("error")
        finally:
            await c.close()


async def _all_prepared(srv: Serve, runtime: Any) -> int:
    """Wait for serve's start-up preparation: the page's prompt, then every scenario agent's."""
    catalog = srv.app.state.scenarios
    expected = 1 + sum(len(s.agents) for s in catalog.scenarios.values())
    async with asyncio.timeout(180), httpx.AsyncClient(base_url=srv.http) as http:
        while not (await http.get("/api/health")).json()["prompts_ready"]:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    assert runtime.prepared == expected
    return expected


async def _open_minted_session(srv: Serve, runtime: Any, body: dict[str, Any]) -> dict[str, Any]:
    """As the page does: mint a secret (``body`` as posted), connect, and wait until the session's
    prompt is evaluated; returns the session from ``session.created``."""
    async with httpx.AsyncClient(base_url=srv.http) as http:
        r = await http.post("/api/session", json=body)
        assert r.status_code == 200, r.text
        secret = r.json()["value"]
    client = AsyncOpenAI(api_key=secret, base_url=f"{srv.http}/v1", websocket_base_url=f"{srv.ws}/v1")
    async with client.realtime.connect(model="gpt-realtime") as raw:
        c = Conn(raw)
        try:
            created = await c.log.wait_for("session.created")
            [session] = runtime.sessions.values()
            await asyncio.wait_for(session.prompt_ready(), 30)
        finally:
            await c.close()
    return created["session"]


async def test_serve_prepares_the_pages_prompt_before_the_first_session(models: Any) -> None:
    """The first page after start-up does not wait for its instructions and tools to be evaluated."""
    from parley.engine.config import EngineConfig
    from parley.host.runtime import EngineRuntime
    from parley.server.page_defaults import page_session
    from tests.support.serve import serve_local

    llm = models.llm
    runtime = EngineRuntime(EngineConfig(validate_events=True), models=models)
    async with serve_local(runtime) as srv:
        await _all_prepared(srv, runtime)  # serve evaluates the page's prompt, then the scenarios'
        before = llm.prefilled_tokens
        created = await _open_minted_session(srv, runtime, {"session": page_session()})
        assert "get_current_time" in {t["name"] for t in created["tools"]}  # serve added its tools
        # Only the few tokens that differ from the prepared prompt were evaluated, not hundreds.
        assert llm.prefilled_tokens - before < 20, llm.prefilled_tokens - before


async def test_serve_prepares_every_scenario_agents_prompt(models: Any) -> None:
    """A scenario's first session, and the agent a handoff switches to, start from prepared prompts."""
    from parley.engine.config import EngineConfig
    from parley.engine.session import RealtimeSession
    from parley.host.runtime import EngineRuntime
    from parley.server.page_defaults import page_session
    from parley.server.scenario import agent_sessions
    from tests.support.serve import serve_local

    llm = models.llm
    runtime = EngineRuntime(EngineConfig(validate_events=True), models=models)
    async with serve_local(runtime) as srv:
        scenario = srv.app.state.scenarios.scenarios["customer_service"]
        expected = await _all_prepared(srv, runtime)
        async with httpx.AsyncClient(base_url=srv.http) as http:
            health = (await http.get("/api/health")).json()
            assert health["prepared_prompts"] == expected and health["prompts_ready"], health
        before = llm.prefilled_tokens
        created = await _open_minted_session(
            srv, runtime, {"session": page_session(), "scenario": scenario.name}
        )
        assert created["instructions"] == scenario.first.instructions
        assert llm.prefilled_tokens - before < 20, llm.prefilled_tokens - before
        # The billing agent's prompt, as a handoff would switch to it.
        sessions = agent_sessions(page_session(None), scenario, srv.app.state.registry)
        billing = next(s for s in sessions if s["instructions"] == scenario.agent("billing").instructions)
        before = llm.prefilled_tokens
        preset = RealtimeSession(models, runtime.config, initial=billing)
        preset.open()
        try:
            await asyncio.wait_for(preset.prompt_ready(), 30)
        finally:
            await preset.close()
        assert llm.prefilled_tokens - before < 20, llm.prefilled_tokens - before
