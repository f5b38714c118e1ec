"""The link to the server: one transport at a time, configured on every (re)connect.

A dropped connection is re-established with exponential backoff and reported
through ``connection`` events. A new connection is a new session: it is
configured again, and whatever the old one was saying is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from parley.client.transport import ConnectionLost, Transport, TransportError

if TYPE_CHECKING:
    from parley.client.conversation import Conversation


class Connection:
    def __init__(self, conv: Conversation, spec: str | Transport, options: dict[str, Any]) -> None:
        self._conv = conv
        self._spec = spec
        self._options = options
        self.status = "connecting"
        self.session_count = 0
        self.connected = asyncio.Event()
        self.closing = False
        # Reconnection attempts since the last event received: a server that accepts and drops
        # at once still runs out of attempts.
        self._attempt = 0

    def make_transport(self) -> Transport:
        conv, spec = self._conv, self._spec
        if not isinstance(spec, str):
            return spec
        if spec in ("websocket", "ws"):
            from parley.client.transport_ws import WebSocketTransport

            opts = {k: v for k, v in self._options.items() if k in ("headers", "open_timeout")}
            return WebSocketTransport(conv.url, conv.api_key, conv.session_options.model, **opts)
        if spec == "webrtc":
            from parley.client.transport_webrtc import WebRTCTransport

            return WebRTCTransport(conv.url, conv.api_key, conv.session_options.model, **self._options)
        raise ValueError(f"unknown transport {spec!r} (websocket or webrtc)")

    async def set_status(self, status: str, **extra: Any) -> None:
        self.status = status
        if status in ("connecting", "reconnecting"):
            await self._conv.set_state(status)
        await self._conv.signal("connection", {"status": status, **extra})

    async def connect_once(self) -> None:
        conv = self._conv
        transport = conv.transport
        await transport.connect()
        if transport.audio_in_events is False:
            transport.on_audio = conv.playback.rtc_audio
        self.session_count += 1
        await self._configure()
        self.connected.set()
        await self.set_status("connected", url=transport.url, session=self.session_count)
        await conv.set_state("listening")

    async def _configure(self) -> None:
        """Send the session config and read back what the server will actually do."""
        conv = self._conv
        await conv.send({"type": "session.update", "session": conv.session_options.to_session()})
        deadline = time.monotonic() + conv.options.session_timeout
        while True:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                raise TransportError("The server did not answer session.update in time.")
            try:
                ev = await asyncio.wait_for(conv.transport.recv(), timeout)
            except TimeoutError:
                continue
            await conv.dispatch(ev)
            if ev.get("type") == "session.updated":
                return
            if ev.get("type") == "error" and (ev.get("error") or {}).get("event_id"):
                err = ev["error"]
                raise TransportError(
                    f"The server rejected the session settings: {err.get('message')}", fatal=True
                )

    async def run(self) -> None:
        """Receive and dispatch events; after a drop, reconnect (or give up and close)."""
        conv = self._conv
        self._attempt = 0
        while not self.closing:
            try:
                while True:
                    ev = await conv.transport.recv()
                    self._attempt = 0
                    await conv.dispatch(ev)
            except asyncio.CancelledError:
                raise
            except (ConnectionLost, TransportError) as exc:
                if self.closing:
                    return
                self.connected.clear()
                conv.forget_session()
                if not conv.options.reconnect or exc.fatal:
                    await self._fail(str(exc))
                    return
                if not await self._reconnect(exc):
                    return

    async def _reconnect(self, exc: Exception) -> bool:
        """Try again with exponential backoff; False once it has given up (or is closing)."""
        conv, options = self._conv, self._conv.options
        while not self.closing:
            self._attempt += 1
            attempt = self._attempt
            if attempt > options.max_reconnect_attempts:
                await self._fail(f"gave up after {attempt - 1} attempts: {exc}")
                return False
            delay = min(options.reconnect_initial_delay * 2 ** (attempt - 1), options.reconnect_max_delay)
            await self.set_status(
                "reconnecting",
                message=str(exc),
                attempt=attempt,
                max_attempts=options.max_reconnect_attempts,
                delay=delay,
            )
            await asyncio.sleep(delay)
            with contextlib.suppress(Exception):
                await conv.transport.close()
            conv.transport = self.make_transport()
            try:
                await self.connect_once()
                return True
            except TransportError as failed:
                exc = failed
                if failed.fatal:
                    await self._fail(str(failed))
                    return False
        return False

    async def _fail(self, message: str) -> None:
        await self.set_status("failed", message=message)
        self._conv.closed.set()
