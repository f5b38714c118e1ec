"""The paced output track and the microphone pump, without a network.

The track is pulled the way aiortc's RTP sender pulls it (``await recv()`` in
a loop); what it hands out is exactly what a listener would hear.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
from av import AudioFrame

from parley.host.transports.webrtc_media import InputAudioPump, PacedAudioOutput
from parley.media.pacing import FRAME_SAMPLES, RTP_RATE
from tests.support.audio import tone

RATE = 24000


class Listener:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def playout_started(self, response_id: str) -> None:
        self.events.append(("started", response_id))

    def playout_stopped(self, response_id: str) -> None:
        self.events.append(("stopped", response_id))


async def pull(track: PacedAudioOutput, frames: int) -> list[AudioFrame]:
    return [await track.recv() for _ in range(frames)]


def left(frames: list[AudioFrame]) -> np.ndarray:
    return np.concatenate([f.to_ndarray().reshape(-1, 2)[:, 0] for f in frames])


async def test_frames_are_paced_stereo_20ms_and_level_is_kept() -> None:
    track = PacedAudioOutput(Listener())
    track.write("resp_1", "item_1", tone(0.3, amplitude=0.5, hz=440.0))
    t0 = time.perf_counter()
    frames = await pull(track, 15)
    elapsed = time.perf_counter() - t0
    track.stop()
    assert all(
        f.samples == FRAME_SAMPLES
        and f.sample_rate == RTP_RATE
        and f.layout.name == "stereo"
        and f.format.name == "s16"
        for f in frames
    )
    assert [f.pts for f in frames] == [i * FRAME_SAMPLES for i in range(15)]
    assert 0.26 <= elapsed <= 0.4, elapsed  # 14 intervals of 20 ms
    stereo = np.concatenate([f.to_ndarray().reshape(-1, 2) for f in frames])
    assert np.array_equal(stereo[:, 0], stereo[:, 1])
    # Full level on both channels (no -3 dB mono upmix): peak ≈ 0.5 full scale.
    assert 0.47 < np.abs(stereo[2000:12000, 0]).max() / 32767 < 0.53


async def test_started_and_stopped_follow_the_audio() -> None:
    listener = Listener()
    track = PacedAudioOutput(listener)
    await pull(track, 2)  # idle: silence, nothing reported
    assert listener.events == []
    track.write("resp_1", "item_1", tone(0.1, amplitude=0.5, hz=440.0))
    frames = await pull(track, 1)
    assert listener.events == [("started", "resp_1")]
    assert np.abs(left(frames)).max() > 1000
    await pull(track, 10)  # audio drained, but the response has not ended: no stop yet
    assert listener.events == [("started", "resp_1")]
    track.end_of_response("resp_1")
    await pull(track, 2)  # the resampler's tail goes out, then the stop
    assert listener.events == [("started", "resp_1"), ("stopped", "resp_1")]
    # A response that ends before any audio was written reports nothing.
    track.end_of_response("resp_2")
    await pull(track, 2)
    assert listener.events == [("started", "resp_1"), ("stopped", "resp_1")]
    track.stop()


async def test_clear_is_silent_on_the_next_frame_and_reports_what_went_out() -> None:
    listener = Listener()
    track = PacedAudioOutput(listener)
    track.write("resp_1", "item_1", tone(2.0, amplitude=0.5, hz=440.0))
    await pull(track, 10)  # 200 ms handed to the encoder
    position = track.clear()
    assert position is not None
    assert (position.response_id, position.item_id, position.played_ms) == ("resp_1", "item_1", 200)
    frames = await pull(track, 3)
    assert np.abs(left(frames)).max() == 0
    assert track.clear() is None  # nothing left to clear
    track.end_of_response("resp_1")
    await pull(track, 2)
    assert listener.events == [("started", "resp_1")]  # cleared audio is not "stopped"
    track.stop()


async def test_clear_while_waiting_for_more_speech_and_before_playout() -> None:
    track = PacedAudioOutput(Listener())
    track.write("resp_1", "item_1", tone(0.1, amplitude=0.5, hz=440.0))
    await pull(track, 8)  # all 100 ms played (plus the resampler's held tail), response still open
    position = track.clear()
    assert position is not None and position.item_id == "item_1" and 90 <= position.played_ms <= 100
    # Queued but not yet started: position 0 of the queued item.
    track.write("resp_2", "item_2", tone(0.5, amplitude=0.5, hz=440.0))
    position = track.clear()
    assert position is not None and (position.response_id, position.played_ms) == ("resp_2", 0)
    track.stop()


async def test_consecutive_responses_do_not_overlap() -> None:
    listener = Listener()
    track = PacedAudioOutput(listener)
    track.write("resp_1", "item_1", tone(0.05, amplitude=0.5, hz=440.0))
    track.end_of_response("resp_1")
    track.write("resp_2", "item_2", tone(0.05, amplitude=0.5, hz=440.0))
    track.end_of_response("resp_2")
    await pull(track, 8)
    assert listener.events == [
        ("started", "resp_1"),
        ("stopped", "resp_1"),
        ("started", "resp_2"),
        ("stopped", "resp_2"),
    ]
    track.stop()


async def test_stopped_track_ends_the_sender_loop() -> None:
    track = PacedAudioOutput()
    await track.recv()
    track.stop()
    try:
        await asyncio.wait_for(track.recv(), 1)
    except Exception as exc:
        assert type(exc).__name__ == "MediaStreamError"
    else:  # pragma: no cover
        raise AssertionError("recv() after stop() must raise")


def stereo_frame(left_ch: np.ndarray, right_ch: np.ndarray) -> AudioFrame:
    packed = np.stack([left_ch, right_ch], axis=1).reshape(1, -1).astype(np.int16)
    frame = AudioFrame.from_ndarray(packed, format="s16", layout="stereo")
    frame.sample_rate = RTP_RATE
    return frame


def test_input_pump_downmixes_and_resamples_to_24k() -> None:
    got: list[np.ndarray] = []
    pump = InputAudioPump(got.append)
    t = np.arange(RTP_RATE) / RTP_RATE
    signal = (np.sin(2 * np.pi * 300 * t) * 16000).astype(np.int16)
    for i in range(0, RTP_RATE, FRAME_SAMPLES):  # 1 s of 20 ms frames, the signal on the left only
        pump.push(stereo_frame(signal[i : i + FRAME_SAMPLES], np.zeros(FRAME_SAMPLES, dtype=np.int16)))
    pcm = np.concatenate(got)
    assert pump.frames == 50
    assert RATE - 1500 <= len(pcm) <= RATE  # the resampler holds back a few ms
    assert pcm.dtype == np.int16
    # The average of the two channels: half the amplitude.
    assert 7000 < np.abs(pcm[2400:-2400]).max() < 9000
