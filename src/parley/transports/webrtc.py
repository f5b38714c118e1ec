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
(ICE failure, DTLS close, data channel close), when it never connects, or
when its session ends; ending releases the peer connection, the tasks, the
session and the ``runtime.calls`` entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile
from starlette.responses import JSONResponse, Response

from parley.engine.auth import bearer_token, is_loopback, openai_error
from parley.engine.runtime import EngineRuntime
from parley.engine.session import RealtimeSession
from parley.protocol import ids
from parley.protocol.errors import ProtocolError
from parley.protocol.session_config import apply_update, default_session
from parley.transports import webrtc_ice, webrtc_media
from parley.transports.webrtc_media import InputAudioPump, PacedAudioOutput

log = logging.getLogger(__name__)

EVENTS_LABEL = "oai-events"
SDP_CONTENT_TYPES = ("application/sdp", "text/plain", "")
CORS_PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, X-OpenAI-Agents-SDK, OpenAI-Beta",
    "Access-Control-Max-Age": "600",
}
# Events sent before the channel opens wait for it; a channel that never opens
# must not let them grow without bound.
MAX_PENDING_EVENTS = 1000


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


class CallError(Exception):
    """A refused call request: becomes an OpenAI-style HTTP error."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None,
                 type_: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.type = status, message, code, param, type_

    def response(self) -> JSONResponse:
        return JSONResponse(openai_error(self.message, self.type, self.code, self.param), status_code=self.status,
                            headers={"Access-Control-Allow-Origin": "*"})


# --------------------------------------------------------------------- events


class DataChannelSink:
    """An EventSink writing JSON events to the ``oai-events`` channel, buffering until it opens."""

    def __init__(self, extensions: bool = False) -> None:
        self.extensions = extensions
        self.channel: RTCDataChannel | None = None
        self.sent = 0
        self._pending: list[dict[str, Any]] = []
        self.on_session_closed: Any = None  # set by the call

    def bind(self, channel: RTCDataChannel) -> None:
        self.channel = channel

    @property
    def open(self) -> bool:
        return self.channel is not None and self.channel.readyState == "open"

    def send(self, event: dict[str, Any]) -> None:
        if not self.open:
            if event["type"] == "session.created":
                self._pending.insert(0, event)  # always the first event on the channel
            elif len(self._pending) < MAX_PENDING_EVENTS:
                self._pending.append(event)
            else:
                log.warning("data channel not open: dropping %s", event["type"])
            return
        self._write(event)

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        for event in pending:
            self._write(event)

    def _write(self, event: dict[str, Any]) -> None:
        assert self.channel is not None
        text = json.dumps(_for_data_channel(event), separators=(",", ":"))
        try:
            self.channel.send(text)
        except ValueError:
            # Larger than the peer's SCTP max-message-size: say so instead of dropping silently.
            self.channel.send(json.dumps(_too_large(event, len(text.encode())), separators=(",", ":")))
        except Exception:  # the channel closed under us; the call is ending
            log.debug("data channel send failed", exc_info=True)
            return
        self.sent += 1

    def close(self) -> None:
        """The session ended (expiry, shutdown): the call must end too."""
        if self.on_session_closed is not None:
            self.on_session_closed()


def _for_data_channel(event: dict[str, Any]) -> dict[str, Any]:
    """Retrieved items lose their audio bytes: the audio went over RTP, and base64
    audio quickly exceeds SCTP message limits (64 KiB for aiortc, 256 KiB for Chromium)."""
    if event["type"] != "conversation.item.retrieved":
        return event
    item = dict(event["item"])
    if isinstance(item.get("content"), list):
        item["content"] = [{k: v for k, v in part.items() if k != "audio"} if isinstance(part, dict) else part
                           for part in item["content"]]
    return {**event, "item": item}


def _too_large(event: dict[str, Any], size: int) -> dict[str, Any]:
    return {"type": "error", "event_id": ids.event_id(), "error": {
        "type": "server_error", "code": "message_too_large", "param": None, "event_id": None,
        "message": f"A {event['type']} event of {size} bytes exceeds the data channel's maximum message size.",
    }}


# ----------------------------------------------------------------------- call


class WebRTCCall:
    """One WebRTC peer and its session; registered in ``runtime.calls`` under its ``rtc_…`` id."""

    def __init__(self, runtime: EngineRuntime, options: WebRTCOptions, *, model: str | None,
                 initial: dict[str, Any] | None, extensions: bool) -> None:
        self.id = ids.rtc_call_id()
        self.runtime = runtime
        self.options = options
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=webrtc_ice.ice_servers(options.ice_servers)))
        self.output = PacedAudioOutput()
        self.sink = DataChannelSink(extensions=extensions)
        self.session: RealtimeSession = runtime.new_session(
            model=model, initial=initial, media=self.output, on_close=lambda code, reason: self.end(reason))
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
        if track.kind != "audio":
            return
        self._remote_tracks += 1
        if self._remote_tracks == 1:  # one microphone per call
            for transceiver in self.pc.getTransceivers():
                if transceiver.receiver.track is track:
                    webrtc_media.lower_input_latency(transceiver.receiver)
            self._spawn(self.pump.run(track), f"{self.id} input")

    def _feed(self, pcm: Any) -> None:
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


def _has_datachannel(sdp: str) -> bool:
    return any(line.startswith("m=application") for line in sdp.splitlines())


# ---------------------------------------------------------------------- route


def calls_router(runtime: EngineRuntime, options: WebRTCOptions | None = None) -> APIRouter:
    options = options or WebRTCOptions.from_runtime(runtime)
    if options.loopback_candidates:
        webrtc_ice.allow_loopback_candidates()
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
        return Response(content=call.pc.localDescription.sdp, status_code=201, media_type="application/sdp",
                        headers={"Location": f"/v1/realtime/calls/{call.id}",
                                 "Access-Control-Allow-Origin": "*",
                                 "Access-Control-Expose-Headers": "Location"})

    return router


async def _create_call(request: Request, runtime: EngineRuntime, options: WebRTCOptions) -> WebRTCCall:
    client = request.client.host if request.client else None
    auth = runtime.auth.check(bearer_token(request.headers.get("authorization")), client)
    if not auth.ok:
        raise CallError(auth.status, auth.message, auth.code)
    if runtime.models is None:
        raise CallError(503, "The engine is still loading its models.", "engine_loading", type_="server_error")
    if runtime.at_capacity():
        raise CallError(429, f"The engine is at its limit of {runtime.config.max_sessions} concurrent sessions.",
                        "session_limit_reached", type_="rate_limit_error")

    offer, form_session, form_metrics = await _read_offer(request, options.max_body_bytes)
    _check_offer(offer)
    updates = [auth.secret.session] if auth.secret is not None else []
    if form_session is not None:
        updates.append(form_session)
    initial = _merge_updates(updates)
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
        raise CallError(400, f"The SDP offer could not be used: {exc or exc.__class__.__name__}",
                        "invalid_offer", "sdp") from None
    return call


async def _read_offer(request: Request, limit: int) -> tuple[str, dict[str, Any] | None, str | None]:
    """(offer SDP, multipart session config or None, multipart parley_metrics flag)."""
    body = await _read_body(request, limit)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return await _read_multipart(request, body)
    if content_type not in SDP_CONTENT_TYPES:
        raise CallError(415, f"Unsupported Content-Type '{content_type}': send the offer as application/sdp "
                        "or as multipart/form-data with 'sdp' and 'session' parts.", "unsupported_media_type")
    return _decode(body, "body"), None, None


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    too_large = CallError(413, f"The request body is larger than {limit} bytes.", "request_too_large")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


async def _read_multipart(request: Request, body: bytes) -> tuple[str, dict[str, Any] | None, str | None]:
    delivered = False

    async def replay() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=4, max_fields=8)
    except Exception:
        raise CallError(400, "The multipart body could not be parsed.", "invalid_multipart") from None
    try:
        parts = {key: await _part_text(form.get(key), key) for key in ("sdp", "session", "parley_metrics")}
    finally:
        await form.close()
    if not parts["sdp"]:
        raise CallError(400, "Missing required parameter: 'sdp'.", "missing_required_parameter", "sdp")
    session = None
    if parts["session"]:
        try:
            session = json.loads(parts["session"])
        except ValueError:
            raise CallError(400, "The 'session' part is not valid JSON.", "invalid_json", "session") from None
        if not isinstance(session, dict):
            raise CallError(400, "The 'session' part must be a JSON object.", "invalid_value", "session")
    return parts["sdp"], session, parts["parley_metrics"]


async def _part_text(value: str | UploadFile | None, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return _decode(await value.read(), name)


def _decode(data: bytes, param: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CallError(400, "The SDP offer is not UTF-8 text.", "invalid_offer", param) from None


def _check_offer(offer: str) -> None:
    """Cheap structural checks with precise messages; aiortc judges the rest."""
    lines = [line.strip() for line in offer.strip().splitlines()]
    if not lines or lines[0] != "v=0":
        raise CallError(400, "The body is not an SDP offer (it must start with 'v=0').", "invalid_offer", "sdp")
    if not any(line.startswith("m=audio") for line in lines):
        raise CallError(400, "The SDP offer has no audio m-line; a call needs an audio track.",
                        "invalid_offer", "sdp")
    # aiortc accepts an offer without a fingerprint and only fails once DTLS starts.
    for attribute, what in (("a=fingerprint:", "DTLS fingerprint"), ("a=ice-ufrag:", "ICE username fragment"),
                            ("a=ice-pwd:", "ICE password")):
        if not any(line.startswith(attribute) for line in lines):
            raise CallError(400, f"The SDP offer has no {what} ('{attribute[:-1]}').", "invalid_offer", "sdp")


def _merge_updates(updates: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Layer session updates (secret's, then the request's): later fields win, ``audio`` merges per field."""
    if not updates:
        return None
    merged: dict[str, Any] = {}
    for update in updates:
        for key, value in update.items():
            if key == "audio" and isinstance(value, dict) and isinstance(merged.get("audio"), dict):
                audio = dict(merged["audio"])
                for side in ("input", "output"):
                    if isinstance(value.get(side), dict) and isinstance(audio.get(side), dict):
                        audio[side] = {**audio[side], **value[side]}
                    elif side in value:
                        audio[side] = value[side]
                merged["audio"] = audio
            else:
                merged[key] = value
    return merged
