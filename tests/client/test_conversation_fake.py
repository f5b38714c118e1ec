"""Conversation orchestration against a tiny protocol-speaking server (real sockets, fake models)."""

from __future__ import annotations

import asyncio
import socket
import wave

import pytest

from parley.client.conversation import ClientOptions, Conversation, SessionOptions
from parley.client.devices import FileAudio
from parley.client.recorder import Recorder, load_events
from parley.client.transport import TransportError
from tests.client.fake_server import fake_server


def _conv(srv, tmp_path, *, interrupt_response: bool = True, key: str = "good", **opts) -> Conversation:
    audio = FileAudio(None, tmp_path / "out.wav")
    return Conversation(srv.base_url, key, session=SessionOptions(interrupt_response=interrupt_response,
                                                                 transcription_model=None),
                        options=ClientOptions(**opts), audio=audio)


async def _play_until(conv: Conversation, seconds: float) -> str:
    await conv.send_text("hello")
    await conv.wait_for("state", lambda e: e["state"] == "speaking", timeout=5)
    await asyncio.sleep(seconds)
    item = conv.player.audible_item()
    assert item is not None
    return item


async def test_barge_in_truncates_to_played_not_received(tmp_path):
    async with fake_server(reply_seconds=4.0) as srv:
        conv = _conv(srv, tmp_path)
        async with conv:
            item = await _play_until(conv, 0.6)
            await srv.speech_started()
            trunc = await srv.wait_event("conversation.item.truncate")
            intr = await conv.wait_for("interrupted", timeout=2) if not conv.interruptions else conv.interruptions[0]
            written_item_ms = conv.player.handed(item) / 24
            # Played ≈ 0.6 s, but all 4 s were received: the figure must be the played one.
            assert trunc["item_id"] == item
            assert abs(trunc["audio_end_ms"] - written_item_ms) <= 20
            assert 450 <= trunc["audio_end_ms"] <= 1200
            assert intr.received_ms > trunc["audio_end_ms"] + 1000
            # interrupt_response is on: the server cancels by itself, the client must not.
            await asyncio.sleep(0.2)
            assert srv.events("response.cancel") == []
            # Playback stopped within one block of the event.
            t_stop = intr.detected_at
            silent_at = conv.audio.first_silent_after(t_stop)
            assert silent_at is not None and silent_at - t_stop <= 0.021
            assert not conv.player.is_playing()


async def test_barge_in_sends_cancel_when_session_does_not_interrupt(tmp_path):
    async with fake_server(reply_seconds=6.0) as srv:
        srv.reply_seconds = 6.0
        conv = _conv(srv, tmp_path, interrupt_response=False)
        async with conv:
            assert conv._auto_interrupts() is False
            await _play_until(conv, 0.3)
            await srv.speech_started()
            await srv.wait_event("conversation.item.truncate")
            cancel = await srv.wait_event("response.cancel")
            assert cancel.get("response_id")
            assert [e for e in conv.interruptions if e.cancel_sent]


async def test_text_message_and_transcript_events(tmp_path):
    async with fake_server(reply_seconds=0.5) as srv:
        conv = _conv(srv, tmp_path)
        deltas: list[str] = []
        conv.on("assistant.transcript.delta", lambda e: deltas.append(e["delta"]))
        states: list[str] = []
        conv.on("state", lambda e: states.append(e["state"]))
        async with conv:
            await conv.send_text("hi")
            await conv.wait_for("response.done")
            await conv.wait_for("state", lambda e: e["state"] == "listening", timeout=3)
        create = srv.events("conversation.item.create")[0]
        assert create["item"]["content"][0] == {"type": "input_text", "text": "hi"}
        assert "".join(deltas).strip().startswith("la")
        assert {"thinking", "speaking", "listening"} <= set(states)
        assert conv.latencies_ms and conv.latencies_ms[0] < 1000


async def test_wrong_key_gives_clear_fatal_error(tmp_path):
    async with fake_server() as srv:
        conv = _conv(srv, tmp_path, key="wrong")
        with pytest.raises(TransportError) as err:
            await conv.start()
        assert err.value.fatal
        assert "rejected the API key" in str(err.value) and "401" in str(err.value)
        await conv.close()


async def test_unreachable_server_message(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conv = Conversation(f"http://127.0.0.1:{port}/v1", "k", audio=FileAudio())
    with pytest.raises(TransportError) as err:
        await conv.start()
    assert "Cannot reach" in str(err.value) and "parley engine" in str(err.value)
    await conv.close()


async def test_dropped_connection_reconnects_with_status(tmp_path):
    async with fake_server(reply_seconds=0.3) as srv:
        conv = _conv(srv, tmp_path, reconnect_initial_delay=0.05)
        seen: list[dict] = []
        conv.on("connection", seen.append)
        async with conv:
            await srv.drop()
            ev = await conv.wait_for("connection", lambda e: e["status"] == "connected", timeout=5)
            assert ev["session"] == 2
            # The new session is configured again and works.
            assert len(srv.events("session.update")) == 2
            await conv.send_text("again")
            await conv.wait_for("response.done")
        statuses = [e["status"] for e in seen]
        assert "reconnecting" in statuses
        rec = next(e for e in seen if e["status"] == "reconnecting")
        assert rec["attempt"] == 1 and "1011" in rec["message"]


async def test_recording_is_complete_after_close(tmp_path):
    async with fake_server(reply_seconds=0.5) as srv:
        conv = _conv(srv, tmp_path)
        conv.recorder = Recorder(tmp_path / "rec")
        async with conv:
            await conv.send_text("hi")
            await conv.wait_for("response.done")
            await asyncio.sleep(0.7)
    events = load_events(tmp_path / "rec")
    kinds = [e["event"]["type"] for e in events]
    assert "session.update" in kinds and "response.done" in kinds
    delta = next(e for e in events if e["event"]["type"] == "response.output_audio.delta")
    assert delta["event"]["delta"].startswith("<audio ")
    with wave.open(str(tmp_path / "rec" / "speaker.wav")) as w:
        assert w.getframerate() == 24000 and w.getnframes() > 24000 * 0.5
    with wave.open(str(tmp_path / "rec" / "mic.wav")) as w:
        assert w.getnframes() > 0
