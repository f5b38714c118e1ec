"""Deadlines for slow clients: request headers and bodies must arrive in stated times.

uvicorn arms no timer until a first response is complete, so a client that
opens a connection and trickles its request line, its headers (a WebSocket
handshake that never finishes) or its body (an SDP offer one byte a second)
would hold a connection, and its memory, for ever. This HTTP protocol cuts such
a client with ``408 Request Timeout`` once the headers take longer than
``HEADER_TIMEOUT_S`` or the body longer than ``BODY_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
from typing import Any

# uvicorn[standard] (pinned in pyproject) brings httptools; this subclasses its protocol's hooks.
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 15.0

_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\ncontent-length: 25\r\n"
    b"connection: close\r\n\r\nThe request took too long"
)


def deadline_http_protocol(
    header_timeout: float | None = None, body_timeout: float | None = None
) -> type[asyncio.Protocol]:
    """uvicorn's ``http=`` setting: its httptools protocol with the two deadlines."""
    headers_s: float = header_timeout or HEADER_TIMEOUT_S
    body_s: float = body_timeout or BODY_TIMEOUT_S

    class DeadlineHttpProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            cycle = getattr(self, "cycle", None)
            if cycle is None or not cycle.response_started:
                self.transport.write(_TIMEOUT_RESPONSE)
            self.transport.close()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm(headers_s)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm(headers_s)  # the next request on a kept-alive connection

        def on_headers_complete(self) -> None:
            self._arm(body_s)  # a request without a body completes at once, below
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def handle_websocket_upgrade(self) -> None:
            self._disarm()  # the WebSocket protocol takes the connection over
            super().handle_websocket_upgrade()

    return DeadlineHttpProtocol
