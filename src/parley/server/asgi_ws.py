"""A WebSocket client connection to an ASGI app in the same process.

The embedded engine is reached through its own ASGI routes (auth, capacity,
sideband, denial responses all stay the engine's), minus the socket: frames
go through two queues. httpx's ASGITransport covers HTTP but not WebSockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import urlencode

from parley.server.security import ASGIApp, Message


class WebSocketRefused(Exception):
    """The handshake was refused with an HTTP status (and usually an OpenAI error body)."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"WebSocket handshake refused with HTTP {status}")
        self.status = status
        self.body = body

    def message(self) -> str:
        try:
            return str(json.loads(self.body)["error"]["message"])
        except (ValueError, KeyError, TypeError):
            text = self.body.decode("utf-8", "replace").strip()
            return text[:300] or f"HTTP {self.status}"


class WebSocketClosed(Exception):
    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"closed with {code} {reason}".strip())
        self.code = code
        self.reason = reason


_CLOSED = object()


class AsgiWebSocket:
    def __init__(
        self,
        app: ASGIApp,
        path: str,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        subprotocols: list[str] | None = None,
        client: tuple[str, int] = ("127.0.0.1", 0),
    ) -> None:
        hdrs = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        if subprotocols:
            hdrs.append((b"sec-websocket-protocol", ", ".join(subprotocols).encode()))
        self._scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "scheme": "ws",
            "http_version": "1.1",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": urlencode(query or {}).encode(),
            "headers": hdrs,
            "client": client,
            "server": ("127.0.0.1", 0),
            "subprotocols": subprotocols or [],
            "extensions": {"websocket.http.response": {}},
            "state": {},
        }
        self._app = app
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Any] = asyncio.Queue()
        self._accepted: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._denial_status = 0
        self._denial_body = b""
        self._task: asyncio.Task[None] | None = None
        self._disconnected = False
        self.close_code: int | None = None
        self.close_reason = ""
        self.subprotocol: str | None = None

    async def connect(self, open_timeout: float = 10.0) -> AsgiWebSocket:
        self._to_app.put_nowait({"type": "websocket.connect"})
        self._task = asyncio.create_task(self._run())
        try:
            self.subprotocol = await asyncio.wait_for(asyncio.shield(self._accepted), open_timeout)
        except BaseException:
            await self.close(1001, "handshake failed")
            raise
        return self

    async def _run(self) -> None:
        try:
            await self._app(self._scope, self._receive, self._send)
        except Exception as exc:
            self._fail(WebSocketClosed(1011, f"engine error: {exc}"[:120]))
        finally:
            self._fail(WebSocketClosed(1006, "connection ended"))

    def _fail(self, exc: Exception) -> None:
        if not self._accepted.done():
            self._accepted.set_exception(
                WebSocketRefused(self._denial_status or 403, self._denial_body)
                if self._denial_status
                else exc
            )
            self._accepted.exception()  # retrieved: nobody may be awaiting it any more
        if self.close_code is None and isinstance(exc, WebSocketClosed):
            self.close_code, self.close_reason = exc.code, exc.reason
        self._from_app.put_nowait(_CLOSED)

    async def _receive(self) -> Message:
        if self._disconnected:
            return {"type": "websocket.disconnect", "code": self.close_code or 1000}
        message = await self._to_app.get()
        if message["type"] == "websocket.disconnect":
            self._disconnected = True
        return message

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "websocket.accept":
            if not self._accepted.done():
                self._accepted.set_result(message.get("subprotocol"))
        elif kind == "websocket.send":
            text = message.get("text")
            self._from_app.put_nowait(text if text is not None else message.get("bytes", b"").decode())
        elif kind == "websocket.close":
            self._fail(WebSocketClosed(message.get("code", 1000), message.get("reason") or ""))
            self._disconnected = True
        elif kind == "websocket.http.response.start":
            self._denial_status = message["status"]
        elif kind == "websocket.http.response.body":
            self._denial_body += message.get("body", b"")
            if not message.get("more_body"):
                self._fail(WebSocketRefused(self._denial_status, self._denial_body))

    async def send(self, text: str) -> None:
        if self.close_code is not None:
            raise WebSocketClosed(self.close_code, self.close_reason)
        self._to_app.put_nowait({"type": "websocket.receive", "text": text})

    async def recv(self) -> str:
        item = await self._from_app.get()
        if item is _CLOSED:
            self._from_app.put_nowait(_CLOSED)  # later calls see the close too
            raise WebSocketClosed(self.close_code or 1006, self.close_reason)
        return item

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if not self._disconnected:
            self._to_app.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 5)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
