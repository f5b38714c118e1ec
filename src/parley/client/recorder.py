"""Session recording (events as JSONL, both audio sides as WAV) and replay.

A recording directory holds:

* ``events.jsonl`` — every client and server event, one per line:
  ``{"t": seconds since start, "dir": "in"|"out", "event": {...}}``. Audio
  payloads are replaced by their size (``"<audio 4800 bytes>"``): the audio
  itself is in the WAVs, and base64 would make the log 30× larger.
* ``mic.wav`` — the microphone as sent (after echo cancellation), 24 kHz.
* ``speaker.wav`` — exactly what was played, 24 kHz, silence included, so the
  two files stay aligned sample for sample with the device clock.

Lines are flushed as written and the WAV headers are patched continuously, so
Ctrl-C (or worse) at any moment leaves a readable recording.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from parley.client.wavio import WavWriter, read_wav
from parley.protocol.audio_formats import CANONICAL_RATE

_AUDIO_FIELDS = {"input_audio_buffer.append": "audio", "response.output_audio.delta": "delta"}


def _elide(event: dict) -> dict:
    key = _AUDIO_FIELDS.get(event.get("type", ""))
    if key and isinstance(event.get(key), str):
        event = dict(event)
        event[key] = f"<audio {len(event[key]) * 3 // 4} bytes>"
    item = event.get("item")
    if isinstance(item, dict) and any(
        isinstance(p, dict) and "audio" in p for p in item.get("content") or []
    ):
        event = dict(event)
        event["item"] = dict(
            item,
            content=[
                dict(p, audio=f"<audio {len(p['audio']) * 3 // 4} bytes>")
                if isinstance(p, dict) and isinstance(p.get("audio"), str)
                else p
                for p in item["content"]
            ],
        )
    return event


class Recorder:
    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.t0 = time.monotonic()
        self._events = open(self.dir / "events.jsonl", "w", encoding="utf-8")
        self._mic = WavWriter(self.dir / "mic.wav", CANONICAL_RATE)
        self._speaker = WavWriter(self.dir / "speaker.wav", CANONICAL_RATE)
        self._lock = threading.Lock()
        self.closed = False

    def event(self, direction: str, event: dict) -> None:
        line = json.dumps(
            {"t": round(time.monotonic() - self.t0, 4), "dir": direction, "event": _elide(event)}
        )
        with self._lock:
            if not self._events.closed:
                self._events.write(line + "\n")
                self._events.flush()

    def mic(self, pcm: np.ndarray) -> None:
        self._mic.write(pcm)

    def speaker(self, pcm: np.ndarray, _t: float = 0.0) -> None:
        self._speaker.write(pcm)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._mic.close()
        self._speaker.close()
        with self._lock:
            self._events.close()


def load_events(directory: str | Path) -> list[dict]:
    """The recorded events; a last line cut short by a hard kill is skipped."""
    events = []
    with open(Path(directory) / "events.jsonl", encoding="utf-8") as f:
        for line in f:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


def transcript_lines(events: list[dict]) -> list[tuple[float, str, str]]:
    """(time, speaker, text) for each finished user and assistant utterance, typed messages included."""
    out = []
    for rec in events:
        ev, t = rec["event"], rec["t"]
        kind = ev.get("type")
        if kind == "conversation.item.input_audio_transcription.completed":
            out.append((t, "user", ev.get("transcript", "")))
        elif kind == "response.output_audio_transcript.done" or kind == "response.output_text.done":
            out.append((t, "assistant", ev.get("transcript") or ev.get("text") or ""))
        elif kind == "conversation.item.create" and rec["dir"] == "out":
            for part in (ev.get("item") or {}).get("content") or []:
                if part.get("type") == "input_text":
                    out.append((t, "user (typed)", part.get("text", "")))
        elif kind == "conversation.item.truncated":
            out.append((t, "system", f"assistant cut at {ev.get('audio_end_ms')} ms (barge-in)"))
    return out


def mixed_audio(directory: str | Path) -> np.ndarray:
    """Both sides of a recording mixed into one mono track (for listening back)."""
    d = Path(directory)
    mic, spk = read_wav(d / "mic.wav"), read_wav(d / "speaker.wav")
    n = max(len(mic), len(spk))
    mix = np.zeros(n, np.int32)
    mix[: len(mic)] += mic
    mix[: len(spk)] += spk
    return np.clip(mix, -32768, 32767).astype(np.int16)


async def replay(
    directory: str | Path,
    *,
    speed: float = 1.0,
    show: Callable[[float, str, str], None] | None = None,
    audio: Any = None,
) -> None:
    """Re-enact a recording: transcript lines at their original times, and the mixed audio.

    ``audio`` is a device (e.g. :class:`~parley.client.devices.FileAudio` or a sound card) that
    plays the mix in real time while the lines appear.
    """
    from parley.client.player import Player

    lines = transcript_lines(load_events(directory))
    player = Player()
    if audio is not None:
        player.write("replay", mixed_audio(directory))
        audio.start(player, lambda _pcm, _t: None)
    t0 = time.monotonic()
    try:
        for t, who, text in lines:
            delay = t / speed - (time.monotonic() - t0)
            if delay > 0:
                await asyncio.sleep(delay)
            if show is not None:
                show(t, who, text)
        if audio is not None:
            while player.is_playing():  # noqa: ASYNC110 - the audio thread has no loop to signal
                await asyncio.sleep(0.05)
    finally:
        if audio is not None:
            audio.stop()
