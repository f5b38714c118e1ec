"""The evidence: real models, a real WebRTC call on loopback, speech in and out.

A Python aiortc peer does what a browser does (offer without candidates,
``oai-events``, Opus microphone at real-time pace). The user's speech is
synthesised by Piper at test time; the reply is recorded from RTP and
transcribed back with the engine's own Whisper. Every server event on the
data channel and the sideband is validated strictly.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
import websockets

from parley.bench.speech import silence, synthesize, voiced_span
from parley.bench.webrtc_peer import RealtimePeer
from parley.engine.config import EngineConfig
from parley.host.runtime import EngineRuntime
from parley.protocol.audio_formats import int16_to_float, resample
from parley.protocol.validation import validate_server_event
from tests.support.models import real_models
from tests.support.servers import RunningServer
from tests.support.text import recall, words
from tests.webrtc.conftest import engine, released

pytestmark = [pytest.mark.models]

KEY = "sk-engine-webrtc"
RATE = 24000


@pytest.fixture(scope="module")
async def models() -> Any:
    return await real_models()


@pytest.fixture(scope="module")
async def srv(models: Any) -> AsyncIterator[RunningServer]:
    runtime = EngineRuntime(EngineConfig(validate_events=True, api_key=KEY), models=models)
    async with engine(runtime) as server:
        yield server


async def mint(srv: RunningServer, session: dict[str, Any]) -> str:
    async with httpx.AsyncClient(base_url=srv.http) as http:
        r = await http.post(
            "/v1/realtime/client_secrets",
            headers={"Authorization": f"Bearer {KEY}"},
            json={"session": {"type": "realtime", **session}},
        )
        r.raise_for_status()
        return r.json()["value"]


@contextlib.asynccontextmanager
async def browser_call(srv: RunningServer, session: dict[str, Any]) -> AsyncIterator[RealtimePeer]:
    """A call the way a browser makes one: with an ephemeral key minted by a backend."""
    peer = RealtimePeer()
    try:
        await peer.connect(f"{srv.http}/v1/realtime/calls", await mint(srv, session))
        await peer.wait_open()
        await peer.wait_for("session.created")
        yield peer
    finally:
        await peer.close()
    for event in peer.events:
        validate_server_event({k: v for k, v in event.items() if k != "_t"})


async def transcribe(models: Any, pcm: np.ndarray) -> str:
    audio = int16_to_float(resample(pcm, RATE, models.stt.sample_rate))
    return (await models.stt.transcribe(audio, language="en")).text


def char_similarity(a: str, b: str) -> float:
    """Similarity of the normalised texts; tolerant of Whisper's word splits ("France is" → "Francis")."""
    return difflib.SequenceMatcher(None, "".join(words(a)), "".join(words(b))).ratio()


def locate(segment: np.ndarray, recording: np.ndarray) -> tuple[int, float]:
    """Where ``segment`` best matches in ``recording``: (offset, normalised correlation)."""
    seg = segment.astype(np.float64)
    rec = recording.astype(np.float64)
    n = len(rec) + len(seg)
    corr = np.fft.irfft(np.fft.rfft(rec, n) * np.conj(np.fft.rfft(seg, n)), n)[: len(rec) - len(seg) + 1]
    energy = np.cumsum(np.concatenate([[0.0], rec**2]))
    window = np.sqrt(np.maximum(energy[len(seg) :] - energy[: -len(seg)], 1e-9))
    ncc = corr / (np.linalg.norm(seg) * window + 1e-9)
    best = int(np.argmax(ncc))
    return best, float(ncc[best])


def loud_frames(pcm: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    n = len(pcm) // 240
    frames = pcm[: n * 240].astype(np.float32).reshape(n, 240) / 32768
    return np.sqrt((frames**2).mean(axis=1)) > threshold


async def test_spoken_turn_with_sideband(srv: RunningServer, models: Any) -> None:
    question = "What is the capital of France?"
    session = {
        "instructions": "Answer in one short sentence.",
        "audio": {"input": {"transcription": {"model": "whisper-1"}}},
    }
    async with browser_call(srv, session) as peer:
        sideband: list[dict[str, Any]] = []
        url = f"{srv.ws}/v1/realtime?call_id={peer.call_id}"
        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:

            async def observe() -> None:
                async for raw in ws:
                    event = json.loads(raw)
                    event["_t"] = time.perf_counter()
                    sideband.append(event)

            reader = asyncio.create_task(observe())
            try:
                peer.mic.play(np.concatenate([silence(0.5), synthesize(question), silence(1.0)]))
                heard = await peer.wait_for(
                    "conversation.item.input_audio_transcription.completed", timeout=20
                )
                assert recall(question, heard["transcript"]) >= 0.8, heard
                done = await peer.wait_for("response.done", timeout=30)
                assert done["response"]["status"] == "completed", done
                rid = done["response"]["id"]
                stopped = await peer.wait_for(
                    "output_audio_buffer.stopped", lambda e: e["response_id"] == rid, timeout=30
                )
                await asyncio.sleep(0.3)  # the last frames sit in the peer's jitter buffer
                types = [e["type"] for e in peer.events]
                started = peer.events[types.index("output_audio_buffer.started")]
                assert started["response_id"] == rid
                assert types.index("response.content_part.added") < types.index("output_audio_buffer.started")
                assert types.index("response.done") < types.index("output_audio_buffer.stopped")
                assert "response.output_audio.delta" not in types and "input_audio_buffer.append" not in types

                # The reply as heard over RTP, transcribed back, says what the transcript says.
                said = peer.of("response.output_audio_transcript.done")[0]["transcript"]
                reply = peer.recording.audio(since=started["_t"] - 0.05)
                back = await transcribe(models, reply)
                assert said.strip() and char_similarity(said, back) >= 0.8, (said, back)
                # Nothing lost on the way: the item's first and last 300 ms are both in what was heard.
                item_id = done["response"]["output"][0]["id"]
                item = srv.runtime.calls[peer.call_id].session.conversation.get(item_id)
                head, tail = item.audio[: RATE * 3 // 10], item.audio[-RATE * 3 // 10 :]
                at_head, corr_head = locate(head, reply)
                at_tail, corr_tail = locate(tail, reply)
                assert corr_head > 0.8 and corr_tail > 0.8, (corr_head, corr_tail)
                assert at_tail - at_head >= len(item.audio) - len(tail) - RATE // 50  # in order, none skipped
                underruns = srv.runtime.calls[peer.call_id].output.underruns
                print(
                    f"\nplayout {stopped['_t'] - started['_t']:.2f} s for {item.audio_ms / 1000:.2f} s of audio "
                    f"({underruns} frames waited for speech); Opus correlation {corr_head:.2f}/{corr_tail:.2f}"
                )

                # The sideband saw the very same events (one emission, every sink).
                await asyncio.sleep(0.1)
                side_ids = {e["event_id"] for e in sideband}
                assert sideband[0]["type"] == "session.created"
                assert {e["event_id"] for e in peer.events[1:]} <= side_ids

                # And it controls the call: the server changes the session and makes the browser speak.
                await ws.send(
                    json.dumps(
                        {
                            "type": "session.update",
                            "session": {
                                "type": "realtime",
                                "instructions": "Say goodbye to the user in a few words.",
                            },
                        }
                    )
                )
                updated = await peer.wait_for("session.updated")
                assert updated["session"]["instructions"].startswith("Say goodbye")
                mark = len(peer.events)
                await ws.send(json.dumps({"type": "response.create"}))
                second = await peer.wait_for("response.done", start=mark, timeout=30)
                assert second["response"]["status"] == "completed"
                await peer.wait_for("output_audio_buffer.stopped", start=mark, timeout=30)
                await asyncio.sleep(0.3)
                started2 = peer.events[
                    [e["type"] for e in peer.events].index("output_audio_buffer.started", mark)
                ]
                assert loud_frames(peer.recording.audio(since=started2["_t"])).sum() > 30  # ≥ 0.3 s of speech
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        for event in sideband:
            validate_server_event({k: v for k, v in event.items() if k != "_t"})
    await released(srv.runtime)


async def test_barge_in_server_truncates_what_was_heard(srv: RunningServer, models: Any) -> None:
    session = {
        "instructions": "You are a storyteller. Tell long, detailed stories.",
        "audio": {"input": {"transcription": {"model": "whisper-1"}}},
    }
    async with browser_call(srv, session) as peer:
        peer.mic.play(
            np.concatenate([silence(0.4), synthesize("Tell me a long story about a dragon."), silence(0.8)])
        )
        interruption = synthesize("Stop, that is enough.")  # now: synthesis would block the loop later
        started = await peer.wait_for("output_audio_buffer.started", timeout=30)
        rid = started["response_id"]
        await asyncio.sleep(1.2 - (time.perf_counter() - started["_t"]))
        assert not peer.of("output_audio_buffer.stopped"), "the reply ended before the barge-in"
        peer.mic.play(np.concatenate([interruption, silence(1.0)]))
        onset = time.perf_counter() + voiced_span(interruption)[0]
        speech = await peer.wait_for("input_audio_buffer.speech_started", start=peer.events.index(started))
        cleared = await peer.wait_for("output_audio_buffer.cleared", timeout=5)
        truncated = await peer.wait_for("conversation.item.truncated", timeout=5)
        assert cleared["response_id"] == rid
        done = await peer.wait_for("response.done", lambda e: e["response"]["id"] == rid)
        item_id = done["response"]["output"][0]["id"]
        assert truncated["item_id"] == item_id and truncated["content_index"] == 0
        if done["response"]["status"] == "cancelled":  # still generating when interrupted
            assert done["response"]["status_details"]["reason"] == "turn_detected"
        assert not [
            e for e in peer.events if e["type"] == "output_audio_buffer.stopped" and e["response_id"] == rid
        ]

        # The truncation point is where the listener's audio stops: the kept audio's last 300 ms is
        # the last thing heard, and silence follows until the next reply.
        await asyncio.sleep(0.6)
        next_start = next(
            (e["_t"] for e in peer.of("output_audio_buffer.started") if e["response_id"] != rid), float("inf")
        )
        item = srv.runtime.calls[peer.call_id].session.conversation.get(item_id)
        assert abs(item.audio_ms - truncated["audio_end_ms"]) <= 1
        reply = np.concatenate(
            [
                c
                for c, t in zip(peer.recording.chunks, peer.recording.arrivals, strict=True)
                if started["_t"] - 0.05 <= t < next_start
            ]
        )
        at, corr = locate(item.audio[-RATE * 3 // 10 :], reply)
        assert corr > 0.8, corr
        after = reply[at + RATE * 3 // 10 + RATE // 25 :]  # 40 ms of slack for the codec's tail
        assert len(after) > RATE // 5 and not loud_frames(after).any()
        # Onset of the user's speech → the assistant silent, as the peer hears it.
        frames = [
            (t, loud_frames(c).any())
            for c, t in zip(peer.recording.chunks, peer.recording.arrivals, strict=True)
            if started["_t"] <= t < cleared["_t"] + 0.5
        ]
        last_loud = max(t for t, is_loud in frames if is_loud)
        stop_latency = last_loud - onset
        # A measurement more than a check: it includes this peer's own receive path and the machine's
        # load; that the wire goes silent on the next frame is proven above by what was heard.
        assert stop_latency < 1.0, stop_latency
        # (The reply's own pauses can make the last audible frame come earlier than the clear.)
        print(
            f"\nbarge-in over WebRTC: onset → speech_started (server clears) {(speech['_t'] - onset) * 1000:.0f} ms, "
            f"last audible reply frame at the peer {stop_latency * 1000:.0f} ms after onset, "
            f"truncated at {truncated['audio_end_ms']} ms (Opus correlation of its last 300 ms {corr:.2f})"
        )

        # What the item keeps is what was heard: a prefix of what was generated.
        peer.send({"type": "conversation.item.retrieve", "item_id": item_id})
        retrieved = await peer.wait_for("conversation.item.retrieved", lambda e: e["item"]["id"] == item_id)
        kept = retrieved["item"]["content"][0]["transcript"]
        generated = done["response"]["output"][0]["content"][0]["transcript"]
        assert kept and len(words(kept)) < len(words(generated)), (kept, generated)
        assert words(generated)[: len(words(kept))] == words(kept)
        assert retrieved["item"]["status"] == "incomplete" or done["response"]["status"] == "completed"
        # (That the kept audio is what was heard is proven by the alignment above; Whisper on a
        # 1-2 s fragment cut mid-word is too unreliable to add anything.)
        # The interruption itself becomes the next user turn.
        heard = await peer.wait_for(
            "conversation.item.input_audio_transcription.completed",
            lambda e: e["item_id"] == speech["item_id"],
            timeout=20,
        )
        assert recall("Stop, that is enough.", heard["transcript"]) >= 0.6, heard
    await released(srv.runtime)
