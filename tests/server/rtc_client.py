"""A browser-like aiortc peer for tests: a paced PCM "microphone", the ``oai-events`` channel, recorded playback."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import time
from typing import Any

import httpx
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from parley.media.ice import allow_loopback_candidates
from parley.protocol.audio_formats import resample
from tests.support.eventlog import EventLog

RTP_RATE = 48000
FRAME = 960  # 20 ms


class PcmMicrophone(MediaStreamTrack):
    """Plays queued 24 kHz PCM at real-time pace, then silence, as Opus-ready 48 kHz stereo frames."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._pending = np.zeros(0, dtype=np.int16)
        self._pts = 0
        self._start: float | None = None
        self.played_until = 0.0  # perf_counter when the queued audio has been sent

    def play(self, pcm24k: np.ndarray) -> None:
        pcm = resample(pcm24k.astype(np.int16), 24000, RTP_RATE).astype(np.int16)
        self._pending = np.concatenate([self._pending, pcm])

    async def recv(self) -> AudioFrame:
        if self._start is None:
            self._start = time.perf_counter()
        due = self._start + self._pts / RTP_RATE
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        chunk, self._pending = self._pending[:FRAME], self._pending[FRAME:]
        if len(chunk) < FRAME:
            chunk = np.concatenate([chunk, np.zeros(FRAME - len(chunk), dtype=np.int16)])
        if len(self._pending):
            self.played_until = time.perf_counter() + len(self._pending) / RTP_RATE
        frame = AudioFrame.from_ndarray(np.repeat(chunk, 2).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = RTP_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, RTP_RATE)
        self._pts += FRAME
        return frame

    @property
    def busy(self) -> bool:
        return len(self._pending) > 0


class RtcClient:
    def __init__(self) -> None:
        allow_loopback_candidates()  # a loopback-only namespace has no other address
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = PcmMicrophone()
        self.pc.addTrack(self.mic)
        self.channel = self.pc.createDataChannel("oai-events")
        self.events = EventLog()
        self.opened = asyncio.Event()
        self.audio: list[tuple[float, np.ndarray]] = []  # (arrival time, 48 kHz mono)
        self.call_id: str | None = None
        self.location: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.channel.on("open", self.opened.set)
        self.channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)

    def _on_message(self, message: str | bytes) -> None:
        self.events.send(json.loads(message))

    def _on_track(self, track: MediaStreamTrack) -> None:
        task = asyncio.ensure_future(self._record(track))
        self._tasks.add(task)

    async def _record(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                samples = frame.to_ndarray().reshape(-1)[::2].astype(np.int16)
                self.audio.append((time.perf_counter(), samples))

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def connect(self, url: str, secret: str, headers: dict[str, str] | None = None) -> httpx.Response:
        sdp = await self.offer()
        async with httpx.AsyncClient(timeout=30) as http:
            r = await http.post(
                url,
                content=sdp,
                headers={
                    "Authorization": f"Bearer {secret}",
                    "Content-Type": "application/sdp",
                    **(headers or {}),
                },
            )
        if r.status_code == 201:
            self.location = r.headers.get("location")
            self.call_id = (self.location or "").rsplit("/", 1)[-1] or None
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
            await asyncio.wait_for(self.opened.wait(), 20)
        return r

    def send(self, event: dict[str, Any]) -> None:
        self.channel.send(json.dumps(event))

    def heard(self, since: float = 0.0) -> np.ndarray:
        chunks = [a for t, a in self.audio if t >= since]
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
