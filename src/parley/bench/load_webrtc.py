"""The WebRTC variant of ``parley bench load``: each simulated user is a browser-like peer.

The user mints an ``ek_`` secret at ``/api/session`` and posts its offer to ``parley serve``'s
``/api/realtime/calls``, as the web page does; it speaks through an audio track (20 ms RTP
frames at real time) and hears the reply on the remote track. Events (its session, the turn's
``speech_stopped``, ``output_audio_buffer.started``/``stopped``) come over the data channel.

What is measured differs from the WebSocket variant only where the transport does:

* *latency*: true end of speech → the first audible frame of the reply on the remote track;
* *gaps*: the server paces the reply in real time and sends silence when it runs dry, so a
  listener's gap is a stretch of silence inside a reply (first audible frame → playout
  stopped) of at least ``GAP_SILENCE_S``; Piper's own pauses between clauses are shorter.
* the server truncates an interrupted reply itself (it knows what was played).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from parley.bench import profiles
from parley.bench.load import UserResult, UserScript, stages_of, turn_row
from parley.bench.spoken_user import until_spoken
from parley.bench.turn import Microphone
from parley.bench.webrtc_peer import CallRefused, RealtimePeer, Recording
from parley.media.ice import allow_loopback_candidates
from parley.media.pacing import FRAME_SAMPLES, RTP_RATE, FrameClock, SampleQueue
from parley.media.rtp_audio import stereo_frame
from parley.protocol.audio_formats import CANONICAL_RATE, Resampler

AUDIBLE_PEAK = 300  # int16: the reply's speech; silence (after Opus) stays far below
GAP_SILENCE_S = 0.4  # silence this long inside a reply is a gap (Piper pauses ~0.2 s between clauses)


class SpeakingTrack(MediaStreamTrack):
    """The user's microphone as an RTP track: labelled utterances, silence in between.

    ``mouth`` is the WebSocket variant's :class:`Microphone` (its queue and the wall-clock
    marks of each utterance's voiced onset and end); here its 20 ms chunks go out as frames.
    """

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.mouth = Microphone(None)
        self._clock = FrameClock(max_lag=None)  # keep exact time, as a test peer does
        self._upsample = Resampler(CANONICAL_RATE, RTP_RATE)
        self._pending = SampleQueue()

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        index = await self._clock.tick()
        self._pending.push(self._upsample(self.mouth._next_chunk(time.perf_counter())))
        return stereo_frame(self._pending.take(FRAME_SAMPLES), index)


class Ears:
    """Scans the remote track's recording for the reply's sound, from where it left off."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        self._seen = 0

    def _chunks_since(self, since: float) -> int:
        arrivals = self.recording.arrivals
        i = self._seen
        while i < len(arrivals) and arrivals[i] <= since:
            i += 1
        return i

    async def first_sound(self, since: float, timeout: float) -> float | None:
        """Arrival time of the first audible frame after ``since``; None if none in ``timeout`` s."""
        deadline = time.perf_counter() + timeout
        i = self._chunks_since(since)
        while time.perf_counter() < deadline:
            chunks, arrivals = self.recording.chunks, self.recording.arrivals
            while i < len(chunks):
                if len(chunks[i]) and int(np.max(np.abs(chunks[i]))) >= AUDIBLE_PEAK:
                    self._seen = i
                    return arrivals[i]
                i += 1
            await asyncio.sleep(0.01)
        self._seen = i
        return None

    def gaps(self, start: float, end: float) -> dict[str, Any]:
        """Silences of ``GAP_SILENCE_S`` or more between ``start`` and ``end`` (a reply's playout)."""
        gaps: list[tuple[float, float]] = []
        run_s, run_from = 0.0, start
        for pcm, t in zip(self.recording.chunks, self.recording.arrivals, strict=True):
            if t < start or t > end:
                continue
            if len(pcm) and int(np.max(np.abs(pcm))) >= AUDIBLE_PEAK:
                if run_s >= GAP_SILENCE_S:
                    gaps.append((round(run_from - start, 2), round(run_s * 1000)))
                run_s = 0.0
            else:
                if run_s == 0.0:
                    run_from = t
                run_s += len(pcm) / CANONICAL_RATE
        return {"underruns": len(gaps), "underrun_ms": float(sum(ms for _, ms in gaps)), "gaps": gaps}


async def run_webrtc_user(base: str, script: UserScript) -> UserResult:
    result = UserResult()
    allow_loopback_candidates()  # the server may be on this host (the benchmark's own serve)
    track = SpeakingTrack()
    peer = RealtimePeer(mic=track)
    mouth, ears = track.mouth, Ears(peer.recording)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            r = await http.post("/api/session", json={"session": {}})
            if r.status_code != 200:
                result.refused, result.failed = r.status_code in (429, 503), f"HTTP {r.status_code}"
                return result
            try:
                await peer.connect(
                    f"{base}/api/realtime/calls?parley_metrics=1", r.json()["value"], http=http
                )
            except CallRefused as exc:
                result.refused, result.failed = exc.status in (429, 503), f"HTTP {exc.status}"
                return result
        await peer.wait_open(30)
        await peer.wait_for("session.created", timeout=30)
        peer.send({"type": "session.update", "session": profiles.session("ui", 500, tools=False)})
        await peer.wait_for("session.updated", timeout=30)
        interrupted = False  # an interruption was just spoken: its reply is the next turn
        label = ""
        asked = 0  # index of the first event since the utterance was queued
        for n in range(script.turns):
            if not interrupted:
                await script.think()
                label = f"q{n}"
                asked = len(peer.events)
                mouth.say(script.question(n), label)
            interrupted = False
            await until_spoken(mouth, label, end=True)
            speech_end = mouth.sent_voice[label][1]
            t_audio = await ears.first_sound(speech_end, script.reply_timeout)
            if t_audio is None:
                result.no_reply += 1
                continue
            started = await peer.wait_for("output_audio_buffer.started", timeout=10, start=asked)
            response_id = started["response_id"]
            turn = turn_row(script, n, speech_end, t_audio, ((e["_t"], e) for e in peer.events[asked:]))
            result.turns.append(turn)
            if script.interrupts(n):
                await asyncio.sleep(1.0)  # barge in about a second into the reply
                label = f"i{n}"
                asked = len(peer.events)
                mouth.say(script.interruption(n), label)
                interrupted = turn["interrupted"] = True
                await until_spoken(mouth, label, end=False)
                continue

            def this_reply(e: dict[str, Any], rid: str = response_id) -> bool:
                return bool(e.get("response_id") == rid)

            done = await peer.wait_for(
                "output_audio_buffer.stopped", this_reply, timeout=script.reply_timeout * 4, start=asked
            )
            turn.update(ears.gaps(t_audio, done["_t"]), reply_s=done["_t"] - t_audio)
            turn.update(stages_of(peer.events, response_id))
    except Exception as exc:  # a failed user is a result, not the benchmark's crash
        result.failed = f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            await peer.close()
    return result
