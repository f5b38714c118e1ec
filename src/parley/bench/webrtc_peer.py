"""A minimal Python WebRTC peer for ``POST /v1/realtime/calls``, as a browser would be.

Used by the connect benchmark and the WebRTC tests: it offers an audio track
and the ``oai-events`` channel, POSTs the offer the way the JS SDK does (no
candidates: they are stripped, so the server must learn us as peer-reflexive),
plays queued 24 kHz audio as a paced microphone, and records what it hears.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import numpy as np
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from parley.media.call_patches import steady_calls
from parley.media.pacing import FRAME_SAMPLES, RTP_RATE, FrameClock, SampleQueue
from parley.media.rtp_audio import lower_input_latency, stereo_frame, to_mono
from parley.protocol.audio_formats import CANONICAL_RATE, Resampler


class MicrophoneTrack(MediaStreamTrack):
    """Plays queued 24 kHz int16 audio in real time as 48 kHz stereo frames; silence in between."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue = SampleQueue()
        self._clock = FrameClock(max_lag=None)  # a test peer keeps exact time, even after a stall
        self.drained = asyncio.Event()
        self.drained.set()

    def play(self, pcm24k: np.ndarray) -> None:
        """Queue audio; it goes out at real-time pace after what is already queued."""
        resampler = Resampler(CANONICAL_RATE, RTP_RATE)
        self._queue.push(
            np.concatenate(
                [resampler(pcm24k.astype(np.int16)), resampler(np.zeros(0, dtype=np.int16), last=True)]
            )
        )
        self.drained.clear()

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        index = await self._clock.tick()
        mono = self._queue.take(FRAME_SAMPLES)
        if not self._queue:
            self.drained.set()
        return stereo_frame(mono, index)


@dataclass
class Recording:
    """Remote audio as 24 kHz mono, with the wall-clock time each frame arrived."""

    chunks: list[np.ndarray] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # perf_counter per chunk

    def audio(self, since: float | None = None) -> np.ndarray:
        parts = [c for c, t in zip(self.chunks, self.arrivals, strict=True) if since is None or t >= since]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


class RealtimePeer:
    """One call from the client side: peer connection, events channel, mic, recording."""

    def __init__(
        self,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        channel_label: str | None = "oai-events",
        mic: MediaStreamTrack | None = None,
    ) -> None:
        """``channel_label=None``: an audio-only peer (the call is then driven over a sideband).
        ``mic``: the outgoing track, when not :attr:`mic` (a :class:`MicrophoneTrack`)."""
        steady_calls()  # as the engine does (see parley.media.call_patches)
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = MicrophoneTrack()
        self.outgoing: MediaStreamTrack = mic or self.mic
        self.channel: RTCDataChannel | None = (
            self.pc.createDataChannel(channel_label) if channel_label is not None else None
        )
        self.recording = Recording()
        self.events: list[dict[str, Any]] = []
        self.on_event = on_event
        self.call_id: str | None = None
        self.channel_open = asyncio.Event()
        self.times: dict[str, float] = {}
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.pc.addTrack(self.outgoing)
        self._channel_closed = asyncio.Event()
        if self.channel is not None:
            self.channel.on("open", self._on_open)
            self.channel.on("message", self._on_message)
            self.channel.on("close", self._channel_closed.set)
        self.pc.on("track", self._on_track)

    # --- connecting ----------------------------------------------------------

    async def connect(
        self,
        url: str,
        token: str | None = None,
        *,
        session: dict[str, Any] | None = None,
        http: httpx.AsyncClient | None = None,
        strip_candidates: bool = True,
        http_timeout: float = 10.0,
    ) -> None:
        """POST the offer (raw SDP, or multipart when ``session`` is given) and apply the answer."""
        self.times["offer"] = time.perf_counter()
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = self.pc.localDescription.sdp
        if strip_candidates:
            offer = strip_ice_candidates(offer)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with contextlib.AsyncExitStack() as stack:
            client = http
            if client is None:
                client = await stack.enter_async_context(httpx.AsyncClient(timeout=http_timeout))
            self.times["post"] = time.perf_counter()
            if session is None:
                r = await client.post(
                    url, content=offer, headers={**headers, "Content-Type": "application/sdp"}
                )
            else:
                r = await client.post(
                    url,
                    headers=headers,
                    files={
                        "sdp": (None, offer, "application/sdp"),
                        "session": (None, json.dumps(session), "application/json"),
                    },
                )
        if r.status_code != 201:
            raise CallRefused(r.status_code, r.text)
        self.call_id = r.headers["location"].rsplit("/", 1)[-1]
        self.times["answer"] = time.perf_counter()
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))

    async def wait_open(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self.channel_open.wait(), timeout)

    async def channel_closed(self, within: float) -> bool:
        """Whether the events channel closes (the call ended) within ``within`` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._channel_closed.wait(), within)
        return self._channel_closed.is_set()

    def _on_open(self) -> None:
        self.times["channel_open"] = time.perf_counter()
        self.channel_open.set()

    # --- events ----------------------------------------------------------------

    def _on_message(self, message: str | bytes) -> None:
        event = json.loads(message)
        event["_t"] = time.perf_counter()
        if event.get("type") == "session.created":
            self.times.setdefault("session_created", event["_t"])
        self.events.append(event)
        if self.on_event is not None:
            self.on_event({k: v for k, v in event.items() if k != "_t"})
        self._changed.set()

    def send(self, event: dict[str, Any]) -> None:
        assert self.channel is not None, "an audio-only peer has no events channel"
        self.channel.send(json.dumps(event))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    async def wait_for(
        self,
        kind: str,
        where: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 10.0,
        start: int = 0,
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen = start
        while True:
            for i in range(seen, len(self.events)):
                event = self.events[i]
                if event["type"] == kind and (where is None or where(event)):
                    return event
            seen = len(self.events)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"no {kind} within {timeout}s; saw {[e['type'] for e in self.events][-25:]}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    # --- audio -------------------------------------------------------------------

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            for transceiver in self.pc.getTransceivers():
                if transceiver.receiver.track is track:  # record as soon as frames arrive, like a browser
                    lower_input_latency(transceiver.receiver)
            task = asyncio.create_task(self._record(track))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _record(self, track: MediaStreamTrack) -> None:
        resampler = Resampler(RTP_RATE, CANONICAL_RATE)
        while True:
            try:
                frame = cast(AudioFrame, await track.recv())  # an audio track yields audio frames
            except MediaStreamError:
                return
            pcm = resampler(to_mono(frame))
            if len(pcm):
                self.recording.chunks.append(pcm)
                self.recording.arrivals.append(time.perf_counter())

    # --- closing -------------------------------------------------------------------

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.outgoing.stop()
        await self.pc.close()


class CallRefused(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


def strip_ice_candidates(sdp: str) -> str:
    """An offer as browsers POST it: before gathering, so without candidates."""
    kept = [
        line
        for line in sdp.splitlines()
        if not line.startswith("a=candidate") and not line.startswith("a=end-of-candidates")
    ]
    return "\r\n".join(kept) + "\r\n"
