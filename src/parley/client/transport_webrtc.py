"""WebRTC transport (aiortc): events over the ``oai-events`` data channel, audio over RTP/Opus.

Connects the way the official JS SDK does: POST the SDP offer as
``application/sdp`` with ``Authorization: Bearer <key>`` to
``<base>/realtime/calls`` and apply the 201 answer. No ICE servers are used
(same host or LAN); aioice is taught to offer 127.0.0.1 so a loopback-only
network works too.

The microphone track sends exactly the blocks the conversation gives it, at
capture pace (silence if none arrived in time); remote audio is decoded,
mixed to mono, resampled to 24 kHz and handed to ``on_audio``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

if TYPE_CHECKING:
    from aiortc import RTCDataChannel, RTCPeerConnection

from parley.client.lowlatency import LowLatencyResampler as Resampler
from parley.client.transport import ConnectionLost, TransportError, describe_http_status
from parley.media.pacing import FRAME_SAMPLES, RTP_RATE, FrameClock, SampleQueue
from parley.media.rtp_audio import stereo_frame, to_mono
from parley.protocol.audio_formats import CANONICAL_RATE


class MicTrack(MediaStreamTrack):
    """20 ms 48 kHz stereo frames from pushed 24 kHz blocks, paced by the RTP clock."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._rs = Resampler(CANONICAL_RATE, RTP_RATE)  # one stream: no clicks between blocks
        self._queue = SampleQueue()
        self._clock = FrameClock(max_lag=None)

    def push(self, pcm24k: np.ndarray) -> None:
        self._queue.push(self._rs(np.asarray(pcm24k, np.int16)))
        # A stalled sender must not build up delay: keep at most ~40 ms.
        while self._queue.size > 2 * FRAME_SAMPLES and len(self._queue) > 1:
            self._queue.drop_oldest()

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        index = await self._clock.tick()
        return stereo_frame(self._queue.take(FRAME_SAMPLES), index)


class WebRTCTransport:
    audio_in_events = False

    def __init__(
        self,
        base_url: str,
        api_key: str,
        model: str,
        *,
        open_timeout: float = 15.0,
        calls_url: str | None = None,
        mint_url: str | None = None,
        headers: dict[str, str] | None = None,
        mint_body: dict[str, Any] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.url = calls_url or self.base_url + "/realtime/calls"
        self.mint_body = dict(mint_body or {})  # e.g. {"scenario": …} for `parley serve`
        # Through `parley serve` a fresh ek_ secret is minted for every call (they live ~60 s),
        # so a reconnection minutes later still gets in.
        self.mint_url = mint_url
        self.headers = dict(headers or {})
        self.api_key, self.model = api_key, model
        self.open_timeout = open_timeout
        self.on_audio: Callable[[np.ndarray], None] | None = None
        self.call_id: str | None = None
        self._pc: RTCPeerConnection | None = None
        self._channel: RTCDataChannel | None = None
        self._mic: MicTrack | None = None
        self._events: asyncio.Queue[dict | BaseException] = asyncio.Queue()
        self._tasks: set[asyncio.Task] = set()

    async def connect(self) -> None:
        import httpx
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        from parley.media.call_patches import steady_calls
        from parley.media.ice import allow_loopback_candidates

        allow_loopback_candidates()
        steady_calls()
        pc = self._pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        mic = self._mic = MicTrack()
        pc.addTrack(mic)
        channel = self._channel = pc.createDataChannel("oai-events")
        opened = asyncio.Event()
        channel.on("open", opened.set)
        channel.on("message", self._on_message)
        channel.on(
            "close", lambda: self._events.put_nowait(ConnectionLost(f"{self.url}: data channel closed"))
        )
        pc.on("track", self._on_track)

        @pc.on("connectionstatechange")
        def _state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self._events.put_nowait(ConnectionLost(f"WebRTC connection {pc.connectionState}"))

        await pc.setLocalDescription(await pc.createOffer())
        try:
            async with httpx.AsyncClient(timeout=self.open_timeout) as http:
                key = self.api_key
                if self.mint_url:
                    m = await http.post(self.mint_url, json=self.mint_body, headers=self.headers)
                    if m.status_code != 200:
                        await self.close()
                        raise describe_http_status(m.status_code, self.mint_url, m.text)
                    key = m.json()["value"]
                r = await http.post(
                    self.url,
                    content=pc.localDescription.sdp,
                    headers={
                        **self.headers,
                        "Authorization": f"Bearer {key}",
                        "Content-Type": "application/sdp",
                    },
                )
        except httpx.ConnectError as exc:
            await self.close()
            raise TransportError(
                f"Cannot reach {self.url}: {exc}. Is the server running?"
                " (a local engine starts with `parley engine`)"
            ) from exc
        except httpx.HTTPError as exc:
            await self.close()
            raise TransportError(f"POST {self.url} failed: {exc}") from exc
        if not 200 <= r.status_code < 300:
            await self.close()
            raise describe_http_status(r.status_code, self.url, r.text)
        self.call_id = r.headers.get("location", "").rsplit("/", 1)[-1] or None
        await pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
        try:
            await asyncio.wait_for(opened.wait(), self.open_timeout)
        except TimeoutError as exc:
            await self.close()
            raise TransportError(
                f"WebRTC connection to {self.url} did not open within {self.open_timeout:.0f} s"
                " (ICE/DTLS failed; check firewalls or ICE servers)"
            ) from exc

    def _on_message(self, message: str | bytes) -> None:
        with contextlib.suppress(ValueError):
            self._events.put_nowait(json.loads(message))

    def _on_track(self, track) -> None:  # type: ignore[no-untyped-def]
        if track.kind == "audio":
            task = asyncio.ensure_future(self._read_audio(track))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _read_audio(self, track) -> None:  # type: ignore[no-untyped-def]
        from aiortc.mediastreams import MediaStreamError

        rs: Resampler | None = None
        rate = 0
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if frame.sample_rate != rate or rs is None:
                rate, rs = frame.sample_rate, Resampler(frame.sample_rate, CANONICAL_RATE)
            pcm = rs(to_mono(frame))
            if len(pcm) and self.on_audio is not None:
                self.on_audio(pcm)

    async def send(self, event: dict) -> None:
        ch = self._channel
        if ch is None or ch.readyState != "open":
            raise ConnectionLost(f"{self.url}: data channel is not open")
        ch.send(json.dumps(event))

    async def recv(self) -> dict:
        item = await self._events.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def send_audio(self, pcm: np.ndarray) -> None:
        if self._mic is not None:
            self._mic.push(pcm)

    async def close(self) -> None:
        pc, self._pc = self._pc, None
        for t in list(self._tasks):
            t.cancel()
        if pc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.close(), 3.0)
