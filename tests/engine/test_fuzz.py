"""A seeded slice of ``parley bench fuzz``: hostile events over WebSocket and WebRTC.

With fake models (the protocol handling is under test): 2,000 hostile frames
from two sessions, one of them a WebRTC call; no session may drop, every probe
must be answered, no handler may crash (``server_error``), nothing may reach the
log at ERROR level, and a bystander session keeps being served. With the real
models: a session that took hostile input still answers a text turn.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets

from parley.bench.fuzz import fuzz, passed
from parley.bench.fuzz_events import Fuzzer
from tests.support.servers import RunningServer


async def test_seeded_fuzz_slice() -> None:
    report = await fuzz(events=2000, sessions=2, webrtc=1, seed=11, probe_every=40)
    assert report["frames_sent"] >= 2000
    assert passed(report), json.dumps(report, indent=2)
    assert report["bystander_turns"] >= 1
    assert set(report["frames_by_family"]) >= {
        "broken_json",
        "binary",
        "deep_nesting",
        "wrong_type",
        "mutation",
        "absurd_value",
        "flood",
        "odd_append",
    }
    assert report["rss_mb"]["peak"] - report["rss_mb"]["start"] < 300


def test_the_stream_is_reproducible() -> None:
    a, b = Fuzzer(5), Fuzzer(5)
    assert [a.next() for _ in range(200)] == [b.next() for _ in range(200)]


@pytest.mark.models
async def test_real_models_answer_after_hostile_input(engine: RunningServer) -> None:
    fuzzer = Fuzzer(3)
    async with websockets.connect(f"{engine.ws}/v1/realtime", max_size=None) as ws:
        for _ in range(300):
            frame, family = fuzzer.next()
            if family != "flood":  # real-model replies to floods would only make the test slow
                await ws.send(frame)
        await ws.send(json.dumps({"type": "response.cancel"}))
        await ws.send(json.dumps({"type": "input_audio_buffer.clear", "event_id": "calm"}))
        await _until(ws, lambda e: e["type"] == "input_audio_buffer.cleared")
        await asyncio.sleep(1.0)  # let a response started by the hostile input finish cancelling
        await ws.send(
            json.dumps(
                {
                    "type": "response.create",
                    "event_id": "ask",
                    "response": {
                        "conversation": "none",
                        "output_modalities": ["text"],
                        "instructions": "You are a helpful assistant. Answer in one short sentence.",
                        "max_output_tokens": 60,
                        "metadata": {"probe": "final"},
                        "input": [
                            {
                                "type": "message",
                                "role": "user",
                                "content": [{"type": "input_text", "text": "What is the capital of France?"}],
                            }
                        ],
                    },
                }
            )
        )
        text: list[str] = []

        def collect(event: dict[str, Any]) -> bool:
            if event["type"] == "error" and (event["error"].get("event_id") == "ask"):
                raise AssertionError(event)
            if event["type"] == "response.output_text.delta":
                text.append(event["delta"])
            meta = (event.get("response") or {}).get("metadata") or {}
            return event["type"] == "response.done" and meta.get("probe") == "final"

        done = await _until(ws, collect, within=120)
        assert done["response"]["status"] in ("completed", "incomplete"), done
        assert "paris" in "".join(text).lower(), text


async def _until(ws: Any, predicate: Any, within: float = 30) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            event = json.loads(await ws.recv())
            if predicate(event):
                return event
