"""Player position tracking, file devices running in real time, the crash-tolerant WAV writer."""

from __future__ import annotations

import threading
import time
import wave

import numpy as np

from parley.client.devices import BLOCK, MAX_LAG_BLOCKS, FileAudio
from parley.client.player import Player
from parley.client.wavio import WavWriter, read_wav


def test_position_counts_played_not_received():
    p = Player()
    p.write("a", np.ones(24000, np.int16))  # 1 s received
    t0 = 100.0
    for k in range(10):  # 10 blocks of 20 ms handed to a device with 50 ms latency
        p.read(BLOCK, t0 + 0.05 + k * 0.02)
    assert p.received("a") == 24000
    assert p.handed("a") == 10 * BLOCK
    # 0.2 s handed, but only what has reached the speaker counts as heard.
    assert p.position("a", now=t0 + 0.05) == 0
    assert p.position("a", now=t0 + 0.15) == 2400
    assert p.position("a", now=t0 + 1.0) == 10 * BLOCK


def test_flush_is_silent_from_next_block_and_ignores_late_audio():
    p = Player()
    p.write("a", np.full(24000, 1000, np.int16))
    assert p.read(BLOCK).any()
    p.flush()
    assert not p.read(BLOCK).any()
    p.write("a", np.full(4800, 1000, np.int16))  # a delta still in flight
    assert not p.read(BLOCK).any()
    p.write("b", np.full(4800, 1000, np.int16))  # the next reply plays
    assert p.read(BLOCK).any()


def test_pause_resume_keeps_queue():
    p = Player()
    p.write("a", np.arange(2000, dtype=np.int16))
    first = p.read(BLOCK)
    p.pause()
    assert not p.read(BLOCK).any()
    assert p.handed("a") == BLOCK
    p.resume()
    assert p.read(BLOCK)[0] == first[-1] + 1


def test_audible_item_follows_queue_then_device_buffer():
    p = Player()
    p.write("a", np.ones(BLOCK, np.int16))
    p.write("b", np.ones(BLOCK, np.int16))
    assert p.audible_item() == "a"
    now = time.monotonic()
    p.read(BLOCK, now + 0.1)  # "a" handed, still in the device buffer for 100 ms
    assert p.audible_item(now) == "b"
    p.read(BLOCK, now + 0.12)
    assert p.audible_item(now) == "b"
    assert p.audible_item(now + 1.0) is None


def test_file_audio_runs_in_real_time_and_writes_output(tmp_path):
    src = tmp_path / "in.wav"
    with wave.open(str(src), "wb") as w:  # 16 kHz input: resampled to 24 kHz on the way in
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.sin(np.arange(8000) / 5) * 5000).astype("<i2").tobytes())
    dev = FileAudio(src, tmp_path / "out.wav")
    player = Player()
    player.write("x", np.full(12000, 3000, np.int16))  # 0.5 s of output
    got: list[tuple[np.ndarray, float]] = []
    dev.start(player, lambda pcm, t: got.append((pcm, t)))
    t0 = time.monotonic()
    assert dev.input_finished.wait(3)
    elapsed = time.monotonic() - t0
    time.sleep(0.2)
    dev.stop()
    assert 0.4 <= elapsed <= 0.8  # 0.5 s of input took ~0.5 s
    mic = np.concatenate([g[0] for g in got])
    assert len(mic) >= 12000 and np.abs(mic[:12000]).max() > 3000
    times = [g[1] for g in got]
    diffs = np.diff(times)
    assert abs(float(np.median(diffs)) - 0.02) < 0.002  # a 20 ms clock (a busy CPU may delay single blocks)
    out = read_wav(tmp_path / "out.wav")
    assert (out[:12000] == 3000).all() and not out[12000:].any()
    assert dev.first_silent_after(0) is not None


def test_inject_reports_onset_time_of_first_sample():
    dev = FileAudio()
    player = Player()
    onset: list[float] = []
    blocks: list[tuple[np.ndarray, float]] = []
    dev.start(player, lambda pcm, t: blocks.append((pcm, t)))
    time.sleep(0.1)
    dev.inject(np.full(BLOCK * 3, 500, np.int16), onset.append)
    time.sleep(0.15)
    dev.stop()
    assert len(onset) == 1
    first = next(t for pcm, t in blocks if pcm.any())
    assert abs(first - onset[0]) < 1e-6


def test_echo_simulation_feeds_speaker_back_into_mic():
    dev = FileAudio(echo_gain=0.5, echo_delay_ms=40)
    player = Player()
    player.write("x", np.full(4800, 4000, np.int16))
    blocks: list[np.ndarray] = []
    dev.start(player, lambda pcm, t: blocks.append(pcm))
    time.sleep(0.4)
    dev.stop()
    mic = np.concatenate(blocks)
    assert mic[:960].max() == 0  # 40 ms delay
    assert abs(int(mic[1000]) - 2000) <= 1


def test_wav_writer_header_valid_while_growing(tmp_path):
    w = WavWriter(tmp_path / "x.wav")
    w.PATCH_EVERY_S = 0.0
    w.write(np.ones(4800, np.int16))
    w.write(np.ones(4800, np.int16))
    # Without close() (a killed process), the file already says how long it is.
    with wave.open(str(tmp_path / "x.wav")) as r:
        assert r.getnframes() == 9600
    w.close()
    w.close()


def test_player_is_thread_safe_under_concurrent_read_write():
    p = Player()
    stop = threading.Event()
    total = 0

    def reader() -> None:
        nonlocal total
        while not stop.is_set():
            total += int((p.read(BLOCK) != 0).sum())

    th = threading.Thread(target=reader)
    th.start()
    for _ in range(200):
        p.write("a", np.ones(BLOCK, np.int16))
    while p.queued_samples:
        time.sleep(0.001)
    stop.set()
    th.join()
    assert total == 200 * BLOCK == p.handed("a")


def test_a_starved_file_clock_skips_the_lost_time_instead_of_bursting():
    """After a stall (a busy CPU) the file speaker plays on at real time, as a card would.

    Catching up by playing the missed blocks back to back drained a reply in a burst
    shorter than the client's state tick, so ``[state] speaking`` and ``[latency]``
    could be missed (the flaky test_files_record_and_replay).
    """
    dev = FileAudio()
    player = Player()
    player.write("reply", np.full(24000, 1000, np.int16))  # 1 s of reply audio
    calls = 0

    def on_mic(pcm: np.ndarray, t: float) -> None:
        nonlocal calls
        calls += 1
        if calls == 5:
            time.sleep(0.4)  # the clock thread starved for 20 blocks

    dev.start(player, on_mic)
    time.sleep(0.8)  # the stall, then 0.3 s more
    dev.stop()
    times = [t for t, silent in zip(dev.log.times, dev.log.silent, strict=False) if not silent]
    gaps = np.diff(times)
    period = BLOCK / 24000
    assert len(times) >= 5
    # A late block may be followed by a few quick ones (up to MAX_LAG_BLOCKS), never by a burst
    # of the 20 blocks the stall lasted.
    assert (gaps < period / 4).sum() <= MAX_LAG_BLOCKS + 1, gaps
    assert (gaps >= 0).all()  # stamped in order


def test_played_blocks_are_counted_for_pollers():
    p = Player()
    assert p.audible_blocks == 0
    p.read(BLOCK, 1.0)  # silence
    p.write("a", np.ones(BLOCK * 2, np.int16))
    p.read(BLOCK, 1.02)
    p.read(BLOCK, 1.04)
    p.read(BLOCK, 1.06)  # silence again
    assert p.audible_blocks == 2
    assert not p.is_playing(now=2.0)  # over: only the count shows that it played
