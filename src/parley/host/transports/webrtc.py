"""Serving a RealtimeSession over WebRTC (``POST /v1/realtime/calls``).

A call is one RTCPeerConnection (aiortc) carrying:

* the microphone as Opus RTP in → :class:`InputAudioPump` → ``session.feed_audio``;
* the session's spoken audio out through :class:`PacedAudioOutput`, the
  session's ``MediaOutput`` (so the server knows exactly what was played and
  truncates on barge-in itself);
* the ``oai-events`` data channel with the same JSON events as the WebSocket,
  minus ``input_audio_buffer.append`` and audio deltas.

The offer usually comes before the browser has gathered any candidates, so the
answer is sent with ours and the browser is learnt as a peer-reflexive
candidate from its connectivity checks. A call ends when its peer goes away
(ICE failure, DTLS close, data channel close), when it never connects, when
``POST /v1/realtime/calls/{call_id}/hangup`` ends it, or when its session ends; ending releases the peer connection, the tasks, the
session and the ``runtime.calls`` entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from fastapi import APIRouter, Request
from starlette.responses import Response

from parley.engine.session import RealtimeSession
from parley.host.runtime import EngineRuntime
from parley.host.transports.webrtc_events import DataChannelSink
from parley.host.transports.webrtc_media import InputAudioPump, PacedAudioOutput
from parley.host.transports.webrtc_offer import CallError, check_offer, merge_updates, read_offer
from parley.httpapi import bearer_token, is_loopback
from parley.media import ice
from parley.media.call_patches import steady_calls
from parley.media.rtp_audio import lower_input_latency
from parley.protocol import ids
from parley.protocol.errors import ProtocolError
from parley.protocol.session_config import apply_update, default_session

log = logging.getLogger(__name__)

EVENTS_LABEL = "oai-events"
CORS_PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, X-OpenAI-Agents-SDK, OpenAI-Beta",
    "Access-Control-Max-Age": "600",
}


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclass
class WebRTCOptions:
    """Transport settings; from ``runtime.config`` and ``PARLEY_WEBRTC_*`` variables."""

    ice_servers: list[str] = field(default_factory=list)
    # Offer 127.0.0.1 as a host candidate (aioice leaves it out): same-host and CI use.
    loopback_candidates: bool = True
    # A call whose peer never completes ICE/DTLS is dropped after this.
    connect_timeout_s: float = 20.0
    # A connected peer whose offer announced a data channel gets this long to open
    # it; after that the session starts anyway (audio-only peer plus a sideband).
    datachannel_grace_s: float = 5.0
    max_body_bytes: int = 256 * 1024

    @classmethod
    def from_runtime(cls, runtime: EngineRuntime) -> WebRTCOptions:
        flag = os.environ.get("PARLEY_WEBRTC_LOOPBACK", "").strip().lower()
        loopback = flag in ("1", "true", "yes", "on") if flag else is_loopback(runtime.config.host)
        return cls(
            ice_servers=list(runtime.config.ice_servers),
            loopback_candidates=loopback,
            connect_timeout_s=_env_float("PARLEY_WEBRTC_CONNECT_TIMEOUT", 20.0),
            datachannel_grace_s=_env_float("PARLEY_WEBRTC_DATACHANNEL_GRACE", 5.0),
        )


# ----------------------------------------------------------------------- call


class WebRTCCall:
    """One WebRTC peer and its session; registered in ``runtime.calls`` under its ``rtc_…`` id."""

    def __init__(
        self,
        runtime: EngineRuntime,
        options: WebRTCOptions,
        *,
        model: str | None,
        initial: dict[str, Any] | None,
        extensions: bool,
    ) -> None:
        self.id = ids.rtc_call_id()
        self.runtime = runtime
        self.options = options
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice.ice_servers(options.ice_servers)))
        self.output = PacedAudioOutput()
        self.sink = DataChannelSink(extensions=extensions)
        self.session: RealtimeSession = runtime.new_session(
            model=model, initial=initial, media=self.output, on_close=lambda code, reason: self.end(reason)
        )
        self.output.listener = self.session
        self.pump = InputAudioPump(self._feed)
        self.opened = False  # session.created sent; microphone audio flows into the session
        self.closed = False
        self.close_reason: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timers: list[asyncio.TimerHandle] = []
        self._close_task: asyncio.Task[None] | None = None
        self._remote_tracks = 0

    # --- setup ---------------------------------------------------------

    async def answer(self, offer: str) -> str:
        """Apply the offer and return the answer SDP (candidates included: no trickle)."""
        pc = self.pc
        pc.on("datachannel", self._on_datachannel)
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_connection_state)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        # After the offer, so the track lands on the offer's audio transceiver (sendrecv).
        pc.addTrack(self.output)
        await pc.setLocalDescription(await pc.createAnswer())
        self.runtime.calls[self.id] = self
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(self.options.connect_timeout_s, self._check_connected))
        if not _has_datachannel(offer):
            self._open_session()  # audio-only peer: the session is driven over a sideband
        else:
            self.session.attach(self.sink)
            self.sink.on_session_closed = lambda: self.end("session closed")
        return pc.localDescription.sdp

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != EVENTS_LABEL or self.sink.channel is not None:
            return
        self.sink.bind(channel)
        channel.on("message", self._on_message)
        channel.on("close", lambda: self.end("data channel closed"))
        if channel.readyState == "open":
            self._on_channel_open()
        else:
            channel.on("open", self._on_channel_open)

    def _on_channel_open(self) -> None:
        self._open_session()
        self.sink.flush()

    def _open_session(self) -> None:
        if self.opened or self.closed:
            return
        self.opened = True
        self.session.open()

    def _on_message(self, message: str | bytes) -> None:
        if not self.closed:
            self.session.receive(message)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "audio" or self.closed:
            return
        self._remote_tracks += 1
        if self._remote_tracks == 1:  # one microphone per call
            for transceiver in self.pc.getTransceivers():
                if transceiver.receiver.track is track:
                    lower_input_latency(transceiver.receiver)
            self._spawn(self.pump.run(track), f"{self.id} input")

    def _feed(self, pcm: np.ndarray) -> None:
        # Audio before session.created would produce VAD events ahead of it.
        if self.opened:
            self.session.feed_audio(pcm)

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        log.debug("%s connection %s", self.id, state)
        if state in ("failed", "closed"):
            self.end(f"connection {state}")
        elif state == "connected" and not self.opened:
            loop = asyncio.get_running_loop()
            self._timers.append(loop.call_later(self.options.datachannel_grace_s, self._open_session))

    def _check_connected(self) -> None:
        if self.pc.connectionState != "connected":
            self.end("peer never connected")

    def _spawn(self, coro: Any, name: str) -> None:
        if self.closed:  # a late aiortc callback during teardown must not start new work
            coro.close()
            return
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- teardown --------------------------------------------------------

    def end(self, reason: str) -> None:
        """Schedule :meth:`close` (safe from callbacks)."""
        if self._close_task is None and not self.closed:
            self._close_task = asyncio.ensure_future(self.close(reason))

    async def close(self, reason: str = "closed") -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        log.info("%s ended: %s", self.id, reason)
        self.runtime.calls.pop(self.id, None)
        for timer in self._timers:
            timer.cancel()
        self.sink.on_session_closed = None
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.output.stop()
        with contextlib.suppress(Exception):
            await self.runtime.end_session(self.session)
        if self.sink.channel is not None:
            self.sink.channel.remove_all_listeners()
        with contextlib.suppress(Exception):
            await self.pc.close()
        self.pc.remove_all_listeners()
        # Anything aiortc started while we were closing (e.g. a track event) goes too.
        for task in [t for t in self._tasks if t is not current]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _has_datachannel(sdp: str) -> bool:
    return any(line.startswith("m=application") for line in sdp.splitlines())


# ---------------------------------------------------------------------- route


def calls_router(runtime: EngineRuntime, options: WebRTCOptions | None = None) -> APIRouter:
    options = options or WebRTCOptions.from_runtime(runtime)
    if options.loopback_candidates:
        ice.allow_loopback_candidates()
    steady_calls()  # a busy engine must not close a live call, nor log a closing one's sends
    router = APIRouter()

    @router.options("/v1/realtime/calls")
    async def preflight() -> Response:
        # Reached only without CORS middleware (the engine app has its own).
        return Response(status_code=204, headers=CORS_PREFLIGHT_HEADERS)

    @router.post("/v1/realtime/calls")
    async def create_call(request: Request) -> Response:
        try:
            call = await _create_call(request, runtime, options)
        except CallError as err:
            return err.response()
        return Response(
            content=call.pc.localDescription.sdp,
            status_code=201,
            media_type="application/sdp",
            headers={
                "Location": f"/v1/realtime/calls/{call.id}",
                "Access-Control-Allow-Origin": "*",
                "Access-Control-Expose-Headers": "Location",
                **({"X-Parley-Node": runtime.config.node_id} if runtime.config.node_id else {}),
            },
        )

    @router.post("/v1/realtime/calls/{call_id}/hangup")
    async def hangup(call_id: str, request: Request) -> Response:
        """End a call (openai-python ``realtime.calls.hangup``); the same rights as a sideband."""
        client = request.client.host if request.client else None
        auth = runtime.auth.check(bearer_token(request.headers.get("authorization")), client)
        if not auth.ok:
            return CallError(auth.status, auth.message, auth.code).response()
        if not auth.is_engine_key:
            return CallError(
                403, "Hanging up a call needs the engine key, not an ephemeral key.", "forbidden"
            ).response()
        call = runtime.calls.get(call_id)
        if not isinstance(call, WebRTCCall) or call.closed:
            return CallError(
                404, f"No active call with id '{call_id}'.", "call_not_found", "call_id"
            ).response()
        # Closing releases the peer connection, so the browser sees its data channel and
        # transport close; the reply comes once everything is released.
        await call.close("hung up")
        return Response(status_code=200, headers={"Access-Control-Allow-Origin": "*"})

    return router


async def _create_call(request: Request, runtime: EngineRuntime, options: WebRTCOptions) -> WebRTCCall:
    client = request.client.host if request.client else None
    auth = runtime.auth.check(bearer_token(request.headers.get("authorization")), client)
    if not auth.ok:
        raise CallError(auth.status, auth.message, auth.code)
    if (refusal := runtime.refusal()) is not None:
        raise CallError(503, refusal.message, refusal.code, type_="server_error", headers=refusal.headers)

    offer, form_session, form_metrics = await read_offer(request, options.max_body_bytes)
    check_offer(offer)
    updates = [auth.secret.session] if auth.secret is not None else []
    if form_session is not None:
        updates.append(form_session)
    initial = merge_updates(updates)
    if initial is not None:
        try:
            apply_update(default_session(), {"type": "realtime", **initial})
        except ProtocolError as err:
            param = f"session.{err.param.removeprefix('session.')}" if err.param else "session"
            raise CallError(400, err.message, err.code, param) from None
    flag = request.query_params.get("parley_metrics") or form_metrics or ""
    extensions = flag.lower() in ("1", "true", "yes")
    model = (initial or {}).get("model") or request.query_params.get("model")

    call = WebRTCCall(runtime, options, model=model, initial=initial, extensions=extensions)
    try:
        await call.answer(offer)
    except Exception as exc:
        await call.close("offer rejected")
        raise CallError(
            400, f"The SDP offer could not be used: {exc or exc.__class__.__name__}", "invalid_offer", "sdp"
        ) from None
    if auth.secret is not None:
        runtime.secrets.consume(auth.secret)  # only a call that started uses up its secret
    return call
