"""Whole calls over loopback WebRTC with fake models: events, playout, barge-in, sideband, teardown.

A Python aiortc peer plays the browser: it POSTs an offer without candidates,
opens ``oai-events``, sends a paced microphone track and records the RTP it
hears. Every server event it receives is validated strictly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aioice.ice
import numpy as np
import pytest
import websockets

from parley.bench.webrtc_peer import RealtimePeer
from parley.media import ice
from parley.protocol.validation import validate_server_event
from tests.support.audio import tone
from tests.support.fakes import FakeLlm, FakeModels
from tests.support.servers import RunningServer
from tests.webrtc.conftest import call_tasks, engine, fake_runtime, released

KEY = "sk-engine-test"
RATE = 24000


@contextlib.asynccontextmanager
async def call(
    srv: RunningServer, token: str = KEY, query: str = "", **connect: Any
) -> AsyncIterator[RealtimePeer]:
    peer = RealtimePeer()
    try:
        await peer.connect(f"{srv.http}/v1/realtime/calls{query}", token, **connect)
        await peer.wait_open()
        await peer.wait_for("session.created")
        yield peer
    finally:
        await peer.close()
    validate_all(peer)


def validate_all(peer: RealtimePeer) -> None:
    for event in peer.events:
        if not event["type"].startswith("parley."):
            validate_server_event({k: v for k, v in event.items() if k != "_t"})


def user_text(text: str) -> dict[str, Any]:
    return {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
    }


def loud(pcm: np.ndarray, threshold: int = 1000) -> np.ndarray:
    """Per 10 ms frame: is it audible?"""
    n = len(pcm) // 240
    return np.abs(pcm[: n * 240].reshape(n, 240)).max(axis=1) > threshold


def heard(peer: RealtimePeer, since: float, until: float = float("inf")) -> list[tuple[float, bool]]:
    """(arrival time, audible?) per received chunk in a window."""
    return [
        (t, bool(loud(c).any()))
        for c, t in zip(peer.recording.chunks, peer.recording.arrivals, strict=True)
        if since <= t < until
    ]


def heard_ms(peer: RealtimePeer, since: float, until: float = float("inf")) -> int:
    """Milliseconds of audible audio the peer received in a window (the fake voice is a steady tone)."""
    chunks = [
        c for c, t in zip(peer.recording.chunks, peer.recording.arrivals, strict=True) if since <= t < until
    ]
    return int(loud(np.concatenate(chunks)).sum()) * 10 if chunks else 0


async def test_turn_events_on_the_channel_and_audio_on_rtp() -> None:
    models = FakeModels(llm=FakeLlm(reply="Paris is the capital of France."))
    async with engine(fake_runtime(models, api_key=KEY)) as srv, call(srv) as peer:
        assert peer.events[0]["type"] == "session.created"
        peer.send({"type": "session.update", "session": {"type": "realtime", "instructions": "Be brief."}})
        await peer.wait_for("session.updated")
        peer.send(user_text("Capital of France?"))
        peer.send({"type": "response.create"})
        done = await peer.wait_for("response.done")
        stopped = await peer.wait_for("output_audio_buffer.stopped", timeout=10)
        await asyncio.sleep(0.3)  # the last frames are still in the receiver's jitter buffer
        types = [e["type"] for e in peer.events]
        rid = done["response"]["id"]
        assert stopped["response_id"] == rid
        started = types.index("output_audio_buffer.started")
        assert (
            types.index("response.content_part.added") < started < types.index("output_audio_buffer.stopped")
        )
        assert types.index("response.done") < types.index("output_audio_buffer.stopped")
        assert "response.output_audio.delta" not in types  # audio goes over RTP
        assert not [t for t in types if t.startswith("parley.")]  # not asked for
        # What was heard: the reply's duration of 220 Hz tone, at the level it was made.
        item = done["response"]["output"][0]
        heard = peer.recording.audio(since=peer.events[started]["_t"] - 0.1)
        audible = loud(heard)
        assert abs(audible.sum() * 10 - 6 * 250) <= 120, audible.sum()  # 6 words × 250 ms of fake speech
        assert 7000 < np.abs(heard).max() < 9000  # FakeTts amplitude 8000: no level loss on the way
        # Retrieved over the data channel: transcript, no audio bytes (they went over RTP).
        peer.send({"type": "conversation.item.retrieve", "item_id": item["id"]})
        retrieved = await peer.wait_for("conversation.item.retrieved")
        assert retrieved["item"]["content"][0]["transcript"] == "Paris is the capital of France."
        assert "audio" not in retrieved["item"]["content"][0]
    await released(srv.runtime)


async def test_metrics_only_when_asked_for() -> None:
    models = FakeModels(llm=FakeLlm(reply="Yes."))
    async with engine(fake_runtime(models)) as srv, call(srv, query="?parley_metrics=1") as peer:
        peer.send(user_text("Hi"))
        peer.send({"type": "response.create"})
        done = await peer.wait_for("response.done")
        metrics = await peer.wait_for("parley.metrics")
        assert metrics["response_id"] == done["response"]["id"]
    await released(srv.runtime)


async def test_client_clear_stops_the_wire_and_truncates_to_what_was_sent() -> None:
    async with engine(fake_runtime()) as srv, call(srv) as peer:
        peer.send(user_text("Capital of France?"))
        peer.send({"type": "response.create"})
        started = await peer.wait_for("output_audio_buffer.started")
        done = await peer.wait_for("response.done")
        await asyncio.sleep(1.0 - (time.perf_counter() - started["_t"]))
        peer.send({"type": "output_audio_buffer.clear"})
        cleared = await peer.wait_for("output_audio_buffer.cleared")
        truncated = await peer.wait_for("conversation.item.truncated")
        item_id = done["response"]["output"][0]["id"]
        assert cleared["response_id"] == done["response"]["id"]
        assert truncated["item_id"] == item_id and truncated["content_index"] == 0
        assert truncated["audio_end_ms"] >= 500
        await asyncio.sleep(0.3)
        after = peer.recording.audio(since=cleared["_t"] + 0.1)
        assert len(after) > RATE // 10 and not loud(after).any()  # silence on the wire
        assert not peer.of("output_audio_buffer.stopped")  # cleared, not drained
        # The truncation point is exactly what reached the listener (wall time would lie under load).
        assert abs(heard_ms(peer, started["_t"] - 0.1) - truncated["audio_end_ms"]) <= 40
        peer.send({"type": "conversation.item.retrieve", "item_id": item_id})
        retrieved = await peer.wait_for("conversation.item.retrieved")
        heard = retrieved["item"]["content"][0]["transcript"]
        full = done["response"]["output"][0]["content"][0]["transcript"]
        assert heard and full.startswith(heard) and len(heard) < len(full)
        assert heard.split() == full.split()[: len(heard.split())]
        # A word is kept once half of it was heard (fake words are 250 ms each).
        assert len(heard.split()) == (truncated["audio_end_ms"] + 125) // 250
    await released(srv.runtime)


async def test_vad_barge_in_flushes_truncates_and_cancels() -> None:
    models = FakeModels(llm=FakeLlm(token_delay=0.25))  # still generating when interrupted
    async with engine(fake_runtime(models)) as srv, call(srv) as peer:
        peer.send(user_text("Capital of France?"))
        peer.send({"type": "response.create"})
        started = await peer.wait_for("output_audio_buffer.started")
        await asyncio.sleep(1.0)
        peer.mic.play(tone(0.8))
        onset = time.perf_counter()  # the mic queue was empty: the tone starts on the next frame
        speech = await peer.wait_for("input_audio_buffer.speech_started")
        done = await peer.wait_for("response.done")
        cleared = await peer.wait_for("output_audio_buffer.cleared")
        truncated = await peer.wait_for("conversation.item.truncated")
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"]["reason"] == "turn_detected"
        assert cleared["response_id"] == done["response"]["id"]
        types = [e["type"] for e in peer.events]
        order = [
            types.index(t)
            for t in (
                "input_audio_buffer.speech_started",
                "response.done",
                "output_audio_buffer.cleared",
                "conversation.item.truncated",
            )
        ]
        assert order == sorted(order)
        # What reached the listener is exactly the truncation point.
        await asyncio.sleep(0.3)
        next_reply = next(
            (
                e["_t"]
                for e in peer.of("output_audio_buffer.started")
                if e["response_id"] != done["response"]["id"]
            ),
            float("inf"),
        )
        assert abs(heard_ms(peer, started["_t"] - 0.1, next_reply) - truncated["audio_end_ms"]) <= 40
        # Onset → silence on the wire, as the listener hears it (fake VAD; loaded CI machines are slow).
        last_loud = max(t for t, audible in heard(peer, started["_t"], cleared["_t"] + 0.5) if audible)
        assert last_loud - onset < 0.6, last_loud - onset
        assert speech["_t"] - onset < 0.5
    await released(srv.runtime)


async def test_sideband_observes_and_controls_the_call() -> None:
    models = FakeModels(llm=FakeLlm(reply="Goodbye now."))
    async with engine(fake_runtime(models, api_key=KEY)) as srv:
        async with srv_http(srv) as http:
            r = await http.post(
                "/v1/realtime/client_secrets", headers={"Authorization": f"Bearer {KEY}"}, json={}
            )
            secret = r.json()["value"]
            r = await http.post(
                "/v1/realtime/client_secrets", headers={"Authorization": f"Bearer {KEY}"}, json={}
            )
            unused = r.json()["value"]
        async with call(srv, token=secret) as peer:
            url = f"{srv.ws}/v1/realtime?call_id={peer.call_id}"
            for token, status in ((unused, 403), (secret, 401)):  # 401: a secret opens one call only
                with pytest.raises(websockets.InvalidStatus) as refused:
                    async with websockets.connect(
                        url, additional_headers={"Authorization": f"Bearer {token}"}
                    ):
                        pass
                assert refused.value.response.status_code == status  # an ephemeral key cannot take control
            async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:
                side: list[dict[str, Any]] = []

                async def until(kind: str) -> dict[str, Any]:
                    async with asyncio.timeout(10):
                        while True:
                            event = json.loads(await ws.recv())
                            validate_server_event(event)
                            side.append(event)
                            if event["type"] == kind:
                                return event

                created = await until("session.created")
                assert created["session"]["id"] == peer.events[0]["session"]["id"]
                await ws.send(
                    json.dumps(
                        {
                            "type": "session.update",
                            "session": {"type": "realtime", "instructions": "Only say goodbye."},
                        }
                    )
                )
                updated = await until("session.updated")
                assert updated["session"]["instructions"] == "Only say goodbye."
                on_peer = await peer.wait_for("session.updated")
                assert on_peer["session"]["instructions"] == "Only say goodbye."
                # The server runs the turn; the browser hears it.
                await ws.send(json.dumps(user_text("Bye")))
                await ws.send(json.dumps({"type": "response.create"}))
                done = await until("response.done")
                started = await peer.wait_for("output_audio_buffer.started")
                assert started["response_id"] == done["response"]["id"]
                await until("output_audio_buffer.stopped")  # sideband sees playout too
                assert "response.output_audio.delta" not in [e["type"] for e in side]
                await asyncio.sleep(0.3)  # the receiver's jitter buffer
                assert loud(peer.recording.audio(since=started["_t"])).sum() >= 40
                await peer.wait_for("output_audio_buffer.stopped")
                await peer.close()  # the browser hangs up: the sideband is closed by the server
                with pytest.raises(websockets.ConnectionClosed):
                    async with asyncio.timeout(5):
                        while True:
                            await ws.recv()
        await released(srv.runtime)


def srv_http(srv: RunningServer) -> Any:
    import httpx

    return httpx.AsyncClient(base_url=srv.http)


async def test_oversized_event_becomes_an_error_and_the_call_goes_on() -> None:
    models = FakeModels(llm=FakeLlm(reply="Okay."))
    async with engine(fake_runtime(models)) as srv, call(srv) as peer:
        # A message just within the SCTP limit both sides advertise (aiortc: 256 KiB), whose
        # echo (conversation.item.added, with ids and status) is over it.
        limit = 262_144
        padding = limit - len(json.dumps(user_text("")))
        assert len(json.dumps(user_text("x" * padding))) == limit
        peer.send(user_text("x" * padding))
        error = await peer.wait_for("error")
        assert error["error"]["code"] == "message_too_large"
        assert "conversation.item.added" in error["error"]["message"]
        peer.send(user_text("Still there?"))
        peer.send({"type": "response.create"})
        done = await peer.wait_for("response.done")
        assert done["response"]["status"] == "completed"
    await released(srv.runtime)


async def _vanish(peer: RealtimePeer) -> None:
    """The peer's host disappears: its UDP sockets close without DTLS or SCTP goodbyes."""
    for transceiver in peer.pc.getTransceivers():
        connection = transceiver.sender.transport.transport._connection
        for protocol in connection._protocols:
            protocol.transport.close()


@pytest.mark.parametrize(
    "how",
    ["peer connection closed", "data channel closed", "peer vanished", "session expired", "engine shut down"],
)
async def test_calls_end_and_release_everything(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if how == "peer vanished":
        # ICE consent expires after 30 s without an answer; the path is the same at 1 s (checks every 0.1 s).
        monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.1)
        monkeypatch.setattr(ice, "CONSENT_EXPIRY_S", 1.0)
    await asyncio.sleep(0.2)  # let earlier tests' teardown settle before counting tasks
    tasks_before = {t for t in asyncio.all_tasks() if not t.done()}
    rt = fake_runtime(max_session_seconds=1) if how == "session expired" else fake_runtime()
    peer = RealtimePeer()
    try:
        async with engine(rt) as srv:
            await peer.connect(f"{srv.http}/v1/realtime/calls", KEY)
            await peer.wait_open()
            await peer.wait_for("session.created")
            server_call = rt.calls[peer.call_id]
            assert call_tasks(peer.call_id)  # the input pump runs
            if how == "peer connection closed":
                await peer.pc.close()
            elif how == "data channel closed":
                peer.channel.close()
            elif how == "peer vanished":
                await _vanish(peer)
            elif how == "session expired":
                error = await peer.wait_for("error", timeout=3)
                assert error["error"]["code"] == "session_expired"
                assert await peer.channel_closed(within=5)
            if how != "engine shut down":
                await released(rt, within=5)
        await released(rt, within=1)
        assert server_call.closed and server_call.pc.connectionState == "closed", server_call.close_reason
        assert server_call.session.closed
        assert not call_tasks(server_call.id)
        if how == "engine shut down":
            assert await peer.channel_closed(within=5)  # the browser side learns the call is over
    finally:
        await peer.close()
    await asyncio.sleep(0.2)
    leftover = [
        t
        for t in asyncio.all_tasks()
        if not t.done() and t not in tasks_before and t is not asyncio.current_task()
    ]
    assert leftover == [], leftover


async def test_audio_only_peer_driven_by_a_sideband() -> None:
    models = FakeModels(llm=FakeLlm(reply="Hello there."))
    async with engine(fake_runtime(models, api_key=KEY)) as srv:
        peer = RealtimePeer(channel_label=None)
        try:
            await peer.connect(f"{srv.http}/v1/realtime/calls", KEY)
            server_call = srv.runtime.calls[peer.call_id]
            assert server_call.opened  # no events channel to wait for
            url = f"{srv.ws}/v1/realtime?call_id={peer.call_id}"
            async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:
                seen: list[str] = []

                async def until(kind: str) -> dict[str, Any]:
                    async with asyncio.timeout(10):
                        while True:
                            event = json.loads(await ws.recv())
                            validate_server_event(event)
                            seen.append(event["type"])
                            if event["type"] == kind:
                                return event

                await until("session.created")
                await ws.send(json.dumps(user_text("Hi")))
                await ws.send(json.dumps({"type": "response.create"}))
                started = await until("output_audio_buffer.started")
                t_started = time.perf_counter()
                await until("output_audio_buffer.stopped")
                await asyncio.sleep(0.3)
                assert started["response_id"]
                assert loud(peer.recording.audio(since=t_started - 0.2)).sum() >= 35  # 2 words × 250 ms
        finally:
            await peer.close()
        await released(srv.runtime)


async def test_session_starts_without_the_events_channel_after_a_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PARLEY_WEBRTC_DATACHANNEL_GRACE", "0.3")
    async with engine(fake_runtime()) as srv:
        peer = RealtimePeer(channel_label="chat")  # a channel, but not oai-events
        try:
            await peer.connect(f"{srv.http}/v1/realtime/calls", KEY)
            await peer.wait_open()
            server_call = srv.runtime.calls[peer.call_id]
            assert not server_call.opened
            async with asyncio.timeout(3):
                while not server_call.opened:  # noqa: ASYNC110 - polling a flag on the server object
                    await asyncio.sleep(0.05)
            assert server_call.session.created_at and not peer.events  # nothing on a foreign channel
        finally:
            await peer.close()
        await released(srv.runtime)


async def test_hangup_ends_the_call_for_the_peer_and_the_sideband() -> None:
    """``client.realtime.calls.hangup(call_id)`` (openai-python) ends a WebRTC call: same rights as a sideband."""
    from openai import AsyncOpenAI, NotFoundError, PermissionDeniedError

    async with engine(fake_runtime(api_key=KEY)) as srv:
        async with srv_http(srv) as http:
            r = await http.post(
                "/v1/realtime/client_secrets", headers={"Authorization": f"Bearer {KEY}"}, json={}
            )
            secret = r.json()["value"]
            r = await http.post(
                "/v1/realtime/client_secrets", headers={"Authorization": f"Bearer {KEY}"}, json={}
            )
            unused = r.json()["value"]  # the call's own secret is used up (401): a fresh one is 403
            async with call(srv, token=secret) as peer:
                url = f"{srv.ws}/v1/realtime?call_id={peer.call_id}"
                async with websockets.connect(
                    url, additional_headers={"Authorization": f"Bearer {KEY}"}
                ) as ws:
                    assert json.loads(await ws.recv())["type"] == "session.created"
                    # An ephemeral key, a wrong key and no key cannot hang up.
                    for headers, status in (
                        ({"Authorization": f"Bearer {unused}"}, 403),
                        ({"Authorization": f"Bearer {secret}"}, 401),
                        ({"Authorization": "Bearer sk-wrong"}, 401),
                        ({}, 401),
                    ):
                        r = await http.post(f"/v1/realtime/calls/{peer.call_id}/hangup", headers=headers)
                        assert r.status_code == status, r.text
                    assert peer.call_id in srv.runtime.calls
                    engine_client = AsyncOpenAI(api_key=KEY, base_url=f"{srv.http}/v1")
                    with pytest.raises(NotFoundError) as missing:
                        await engine_client.realtime.calls.hangup("rtc_nosuchcall")
                    assert missing.value.code == "call_not_found"
                    ephemeral_client = AsyncOpenAI(api_key=unused, base_url=f"{srv.http}/v1")
                    with pytest.raises(PermissionDeniedError):
                        await ephemeral_client.realtime.calls.hangup(peer.call_id)

                    assert await engine_client.realtime.calls.hangup(peer.call_id) is None
                    assert peer.call_id not in srv.runtime.calls  # released before the reply
                    assert await peer.channel_closed(within=5)
                    with pytest.raises(websockets.ConnectionClosed):
                        async with asyncio.timeout(5):
                            while True:
                                await ws.recv()
                    # Hanging up again: the call is gone.
                    r = await http.post(f"/v1/realtime/calls/{peer.call_id}/hangup", headers=auth_header())
                    assert r.status_code == 404 and r.json()["error"]["code"] == "call_not_found"
        await released(srv.runtime)


def auth_header() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}
