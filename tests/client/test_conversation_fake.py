"""Conversation orchestration against a tiny protocol-speaking server (real sockets, fake models)."""

from __future__ import annotations

import asyncio
import base64
import socket
import wave

import numpy as np
import pytest

from parley.client.conversation import Conversation
from parley.client.devices import FileAudio
from parley.client.options import ClientOptions, SessionOptions
from parley.client.recorder import Recorder, load_events
from parley.client.transport import TransportError
from parley.client.wavio import read_wav
from tests.support.fake_server import fake_server


def _conv(srv, tmp_path, *, interrupt_response: bool = True, key: str = "good", **opts) -> Conversation:
    audio = FileAudio(None, tmp_path / "out.wav")
    return Conversation(
        srv.base_url,
        key,
        session=SessionOptions(interrupt_response=interrupt_response, transcription_model=None),
        options=ClientOptions(**opts),
        audio=audio,
    )


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
            intr = (
                await conv.wait_for("interrupted", timeout=2)
                if not conv.interruptions
                else conv.interruptions[0]
            )
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
            assert conv.barge_in.server_interrupts() is False
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


async def test_push_to_talk_sends_only_while_pressed_and_interrupts(tmp_path):
    async with fake_server(reply_seconds=4.0) as srv:
        audio = FileAudio(None, tmp_path / "out.wav")
        conv = Conversation(
            srv.base_url,
            "good",
            audio=audio,
            session=SessionOptions(turn_detection=None, transcription_model=None),
        )
        async with conv:
            assert srv.sessions[-1]["audio"]["input"]["turn_detection"] is None
            await asyncio.sleep(0.2)
            assert srv.events("input_audio_buffer.append") == []  # not pressed: nothing leaves
            await conv.push_to_talk(True)
            await asyncio.sleep(0.3)
            assert len(srv.events("input_audio_buffer.append")) >= 10
            await conv.push_to_talk(False)
            await srv.wait_event("input_audio_buffer.commit")
            await srv.wait_event("response.create")
            if conv.state != "speaking":
                await conv.wait_for("state", lambda e: e["state"] == "speaking", timeout=5)
            await asyncio.sleep(0.3)
            # Pressing again while the assistant talks is a barge-in; no server VAD, so the client cancels.
            await conv.push_to_talk(True)
            trunc = await srv.wait_event("conversation.item.truncate")
            await srv.wait_event("response.cancel")
            assert 200 <= trunc["audio_end_ms"] <= 800
            kinds = [e["type"] for e in srv.received]
            assert kinds.index("conversation.item.truncate") < len(kinds) - 1 - kinds[::-1].index(
                "input_audio_buffer.clear"
            )


class _ScriptedVad:
    """Says "start" on the first block it sees after being armed (stands in for Silero)."""

    def __init__(self) -> None:
        self.armed = False

    def feed(self, pcm):
        if self.armed:
            self.armed = False
            return "start"
        return None


async def test_local_vad_pause_resumes_when_server_does_not_confirm(tmp_path):
    async with fake_server(reply_seconds=4.0) as srv:
        conv = _conv(srv, tmp_path, local_vad_confirm_s=0.4)
        async with conv:
            conv.microphone.vad = _ScriptedVad()
            item = await _play_until(conv, 0.4)
            conv.microphone.vad.armed = True
            await conv.wait_for("local_vad", timeout=2)
            handed = conv.player.handed(item)
            await asyncio.sleep(0.2)
            assert conv.player.paused and conv.player.handed(item) == handed  # silent, nothing lost
            await asyncio.sleep(0.4)
            assert not conv.player.paused and conv.player.handed(item) > handed  # carried on
            assert srv.events("conversation.item.truncate") == []


async def test_local_vad_pause_then_server_confirms_truncates_at_pause(tmp_path):
    async with fake_server(reply_seconds=4.0) as srv:
        conv = _conv(srv, tmp_path, local_vad_confirm_s=2.0)
        async with conv:
            conv.microphone.vad = _ScriptedVad()
            item = await _play_until(conv, 0.4)
            conv.microphone.vad.armed = True
            await conv.wait_for("local_vad", timeout=2)
            handed = conv.player.handed(item)
            await asyncio.sleep(0.3)  # the server's VAD is slower
            await srv.speech_started()
            trunc = await srv.wait_event("conversation.item.truncate")
            assert trunc["audio_end_ms"] == handed * 1000 // 24000
            assert conv.interruptions[-1].trigger == "local_vad"


def test_pull_resampler_feeds_any_device_rate():
    from parley.client.devices import _PullResampler
    from parley.client.player import Player

    p = Player()
    p.write("a", np.full(24000, 1000, np.int16))
    pull = _PullResampler(p, 44100)
    out = np.concatenate([pull.read(441, 10.0 + i * 0.01) for i in range(50)])  # 0.5 s at 44.1 kHz
    assert len(out) == 22050
    assert abs(int(np.median(out[2000:])) - 1000) <= 2
    # Played position is tracked in protocol samples (24 kHz), not device samples.
    assert abs(p.position("a", now=11.0) - 12000) <= 480


async def test_g711_output_is_decoded_and_truncated_in_milliseconds(tmp_path):
    async with fake_server(reply_seconds=3.0) as srv:
        audio = FileAudio(None, tmp_path / "out.wav")
        conv = Conversation(
            srv.base_url,
            "good",
            audio=audio,
            session=SessionOptions(
                output_format="audio/pcmu", input_format="audio/pcmu", transcription_model=None
            ),
        )
        async with conv:
            assert srv.sessions[-1]["audio"]["output"]["format"] == {"type": "audio/pcmu"}
            item = await _play_until(conv, 0.5)
            await asyncio.sleep(0.5)  # everything received by now
            assert abs(conv.player.received(item) / 24000 - 3.0) < 0.05  # 8 kHz µ-law → 24 kHz PCM
            appends = srv.events("input_audio_buffer.append")
            sizes = [len(base64.b64decode(a["audio"])) for a in appends[5:]]
            assert sizes and all(150 <= n <= 170 for n in sizes)  # 20 ms of 8 kHz µ-law each, no bursts
            await srv.speech_started()
            trunc = await srv.wait_event("conversation.item.truncate")
            assert abs(trunc["audio_end_ms"] - conv.player.handed(item) / 24) <= 1
    out = read_wav(tmp_path / "out.wav")
    assert np.abs(out).max() > 5000  # the tone survived the µ-law round trip
