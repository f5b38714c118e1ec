"""Serving a RealtimeSession over a WebSocket (``GET /v1/realtime``).

Handshake: authenticate (Authorization header or the browser subprotocol
``openai-insecure-api-key.<key>``), pick the ``realtime`` subprotocol when
offered (Chromium fails the handshake otherwise), then pump frames both ways.
A refused handshake gets an HTTP status with the OpenAI error body when the
server supports WebSocket denial responses, else a policy-violation close. A
session refused for capacity or a drain is accepted, told why in an ``error``
event and closed with 1013 (see admission.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from parley.engine.session import RealtimeSession
from parley.host.admission import refuse_websocket
from parley.host.runtime import EngineRuntime
from parley.httpapi import bearer_token, deny, subprotocol_token
from parley.protocol import close_codes, ids
from parley.protocol.session_config import wire_session

log = logging.getLogger(__name__)


# Events waiting for a client that does not read: past this the client is cut off
# (1013) instead of the queue growing without bound. A spoken reply is a few
# hundred events and a healthy socket drains them as they come.
MAX_PENDING_EVENTS = 4096


class WebSocketSink:
    """An EventSink that queues events for one socket's writer task."""

    def __init__(self, extensions: bool = False, max_pending: int | None = None) -> None:
        self.extensions = extensions
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.max_pending = max_pending or MAX_PENDING_EVENTS
        self.on_overflow: Callable[[], None] | None = None
        self.overflowed = False

    def send(self, event: dict[str, Any]) -> None:
        if self.overflowed:
            return
        if self.queue.qsize() >= self.max_pending:
            self.overflowed = True
            while not self.queue.empty():  # nobody will read them: free the memory now
                self.queue.get_nowait()
            if self.on_overflow:
                self.on_overflow()
            return
        self.queue.put_nowait(event)

    def close(self) -> None:
        self.queue.put_nowait(None)

    async def pump(self, ws: WebSocket) -> None:
        while (event := await self.queue.get()) is not None:
            await ws.send_text(json.dumps(event, separators=(",", ":")))


def node_headers(runtime: EngineRuntime) -> list[tuple[bytes, bytes]]:
    """``X-Parley-Node`` names the node that took a session, when ``PARLEY_NODE_ID`` is set
    (behind a load balancer: which node a client landed on)."""
    node = runtime.config.node_id
    return [(b"x-parley-node", node.encode("latin-1", "replace"))] if node else []


def _wants_extensions(ws: WebSocket) -> bool:
    return ws.query_params.get("parley_metrics", "").lower() in ("1", "true", "yes")


async def realtime_websocket(ws: WebSocket, runtime: EngineRuntime) -> None:
    offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    token = bearer_token(ws.headers.get("authorization")) or subprotocol_token(offered)
    client_host = ws.client.host if ws.client else None
    auth = runtime.auth.check(token, client_host)
    if not auth.ok:
        await deny(ws, auth.status, auth.message, auth.code)
        return
    subprotocol = "realtime" if "realtime" in offered else None

    call_id = ws.query_params.get("call_id")
    if call_id:
        await _sideband(ws, runtime, call_id, auth.is_engine_key, subprotocol)
        return
    if (refusal := runtime.refusal()) is not None:
        # Accepted, then closed 1013 with the wait in the reason: what every client can read.
        await refuse_websocket(ws, refusal, subprotocol)
        return

    if auth.secret is not None:
        runtime.secrets.consume(auth.secret)
    await ws.accept(subprotocol=subprotocol, headers=node_headers(runtime))
    sink = WebSocketSink(extensions=_wants_extensions(ws))
    closing: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    def on_close(code: int, reason: str) -> None:
        if not closing.done():
            closing.set_result((code, reason))

    sink.on_overflow = lambda: on_close(
        close_codes.OVERLOADED, f"client read too slowly: over {sink.max_pending} events waiting"
    )

    session = runtime.new_session(
        model=ws.query_params.get("model"),
        initial=auth.secret.session if auth.secret else None,
        on_close=on_close,
    )
    session.attach(sink)
    session.open()
    await _run(ws, session, sink, closing, runtime.config.max_message_bytes)
    await runtime.end_session(session)


async def _run(
    ws: WebSocket,
    session: RealtimeSession,
    sink: WebSocketSink,
    closing: asyncio.Future[tuple[int, str]],
    max_bytes: int,
) -> None:
    writer = asyncio.create_task(sink.pump(ws))
    reader = asyncio.create_task(_read(ws, session, max_bytes))
    try:
        waiting: set[asyncio.Future[Any]] = {writer, reader, closing}
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if reader in done and not reader.cancelled() and reader.exception() is not None:
            # A bug, not the client's doing (the session turns bad input into error events):
            # say so in the log and in the close code.
            log.error("WebSocket session %s failed", session.id, exc_info=reader.exception())
            with contextlib.suppress(Exception):
                await ws.close(code=close_codes.INTERNAL, reason="internal error")
        if closing in done:
            code, reason = closing.result()
            sink.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, 2)  # flush the final error event
            with contextlib.suppress(Exception):
                await ws.close(code=code, reason=reason)
    finally:
        session.detach(sink)
        for task in (writer, reader):
            task.cancel()
        for task in (writer, reader):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if ws.application_state != WebSocketState.DISCONNECTED:
            with contextlib.suppress(Exception):
                await ws.close()


async def _read(ws: WebSocket, session: RealtimeSession, max_bytes: int) -> None:
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("text")
            if data is None:
                data = message.get("bytes")
            if data is not None:
                session.receive(data)
    except WebSocketDisconnect:
        return


async def _sideband(
    ws: WebSocket, runtime: EngineRuntime, call_id: str, is_engine_key: bool, subprotocol: str | None
) -> None:
    """Observe and control a running WebRTC call: same events, same client events."""
    if not is_engine_key:
        await deny(ws, 403, "Sideband connections need the engine key, not an ephemeral key.", "forbidden")
        return
    call = runtime.calls.get(call_id)
    session: RealtimeSession | None = getattr(call, "session", None)
    if session is None or session.closed:
        await deny(ws, 404, f"No active call with id '{call_id}'.", "call_not_found")
        return
    await ws.accept(subprotocol=subprotocol)
    sink = WebSocketSink(extensions=_wants_extensions(ws))
    # The observer gets its own session.created, then the live event stream.
    sink.send(
        {"type": "session.created", "event_id": ids.event_id(), "session": wire_session(session.session)}
    )
    closing: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    def on_overflow() -> None:
        if not closing.done():
            closing.set_result(
                (close_codes.OVERLOADED, f"observer read too slowly: over {sink.max_pending} events")
            )

    sink.on_overflow = on_overflow
    session.attach(sink)
    await _run(ws, session, sink, closing, runtime.config.max_message_bytes)
