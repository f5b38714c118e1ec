"""Echo cancellation and the local VAD on real audio (espeak-ng / Piper speech, Silero model)."""

from __future__ import annotations

import subprocess
import time

import numpy as np
import pytest

from parley.client.aec import EchoCanceller, erle_db
from parley.client.devices import BLOCK, FileAudio
from parley.client.player import Player
from parley.client.wavio import read_wav


def _espeak(tmp_path, text: str, name: str, voice: str = "en-us") -> np.ndarray:
    path = tmp_path / f"{name}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
    return read_wav(path)


def test_aec_cancels_simulated_echo_and_keeps_near_speech(tmp_path):
    """Speaker audio fed back through the file device's echo path is removed; the user's voice stays."""
    far = _espeak(
        tmp_path,
        "The weather today is sunny with a light breeze from the west, "
        "and tomorrow there will be rain in the afternoon.",
        "far",
    )
    near = _espeak(tmp_path, "Stop, I want to ask something else.", "near", "en-gb")
    dev = FileAudio(echo_gain=0.5, echo_delay_ms=60, realtime=False)
    player = Player()
    aec = EchoCanceller()
    player.on_played.append(aec.far)
    player.write("a", far)
    raw, out = [], []
    double_talk_at = int(3.0 * 24000)

    def on_mic(pcm: np.ndarray, t: float) -> None:
        raw.append(pcm.copy())
        out.append(aec.near(pcm))

    # Double talk: the user speaks over the assistant from 3 s on.
    dev._mic = np.zeros(double_talk_at + len(near), np.int16)
    dev._mic[double_talk_at:] = near // 2
    dev.start(player, on_mic)
    deadline = time.monotonic() + 30
    while len(raw) * BLOCK < len(far) + 24000 and time.monotonic() < deadline:
        time.sleep(0.01)
    dev.stop()
    mic, cancelled = np.concatenate(raw), np.concatenate(out)
    echo_only = slice(24000, double_talk_at)  # after 1 s of convergence, before the user talks
    erle = erle_db(mic[echo_only], cancelled[echo_only])
    assert erle > 25, f"ERLE {erle:.1f} dB"
    # The user's words survive in double talk (correlation with the clean near-end speech).
    seg = slice(double_talk_at, double_talk_at + len(near))
    ref = (near // 2).astype(np.float64)
    best = max(
        float(
            np.dot(cancelled[seg][lag:].astype(np.float64), ref[: len(ref) - lag])
            / (np.linalg.norm(cancelled[seg][lag:]) * np.linalg.norm(ref[: len(ref) - lag]) + 1e-9)
        )
        for lag in range(0, 480, 12)
    )
    assert best > 0.4, f"near-end correlation {best:.2f}"


@pytest.mark.models
def test_local_vad_detects_speech_onset_quickly():
    from parley.bench.speech import synthesize
    from parley.client.local_vad import LocalVad

    speech = synthesize("Hold on, I have another question.")
    pcm = np.concatenate([np.zeros(24000, np.int16), speech, np.zeros(24000, np.int16)])
    onset = int(np.flatnonzero(np.abs(pcm) > 600)[0])
    vad = LocalVad()
    events = []
    for i in range(0, len(pcm) - BLOCK + 1, BLOCK):
        ev = vad.feed(pcm[i : i + BLOCK])
        if ev:
            events.append((ev, i + BLOCK))
    assert [e for e, _ in events][:2] == ["start", "stop"]
    delay_ms = (events[0][1] - onset) / 24
    assert 0 <= delay_ms <= 160, delay_ms
    # Silence alone never triggers.
    vad.reset()
    assert all(vad.feed(np.zeros(BLOCK, np.int16)) is None for _ in range(100))
