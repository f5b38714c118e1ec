"""WebSocket transport through openai-python's realtime client.

openai-python builds the URL and the auth headers exactly as it does for
api.openai.com; only ``base_url``/``websocket_base_url`` change for a local
engine or a ``parley serve`` relay. Events are sent and received as raw JSON
(``send_raw``/``recv_bytes``): audio appends are the bulk of the traffic, and
the SDK's per-event transformation of dicts would only cost CPU.

Reconnection is the conversation's job (a new connection is a new session
that must be configured again), so the SDK's own reconnect is left off.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np

if TYPE_CHECKING:
    from openai.resources.realtime.realtime import AsyncRealtimeConnection, AsyncRealtimeConnectionManager

from parley.client.transport import ConnectionLost, TransportError, describe_http_status
from parley.protocol import close_codes


def http_to_ws(base_url: str) -> str:
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return parts._replace(scheme=scheme).geturl()


class WebSocketTransport:
    audio_in_events = True

    def __init__(
        self,
        base_url: str,
        api_key: str,
        model: str,
        *,
        open_timeout: float = 10.0,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.url = http_to_ws(self.base_url) + f"/realtime?model={model}"
        self.query = dict(query or {})  # e.g. the scenario a `parley serve` relay should run
        self.api_key, self.model = api_key, model
        self.open_timeout = open_timeout
        self.headers = dict(headers or {})  # e.g. a `parley serve` access token
        self._conn: AsyncRealtimeConnection | None = None
        self._manager: AsyncRealtimeConnectionManager | None = None
        self.on_audio: Callable[[np.ndarray], None] | None = None

    async def connect(self) -> None:
        from openai import AsyncOpenAI
        from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

        client = AsyncOpenAI(
            api_key=self.api_key,
            base_url=self.base_url,
            websocket_base_url=http_to_ws(self.base_url),
            max_retries=0,
            default_headers=self.headers or None,
        )
        manager = self._manager = client.realtime.connect(
            model=self.model,
            extra_query=self.query,
            # websockets' own connect() options, which the SDK passes through untyped.
            websocket_connection_options={  # type: ignore[typeddict-unknown-key]
                "open_timeout": self.open_timeout,
                "ping_interval": 20,
                "ping_timeout": 20,
                "max_queue": None,
            },
        )
        try:
            self._conn = await manager.enter()
        except InvalidStatus as exc:
            body = exc.response.body.decode("utf-8", "replace") if exc.response.body else ""
            raise describe_http_status(exc.response.status_code, self.url, body) from exc
        except InvalidURI as exc:
            raise TransportError(f"Invalid server URL {self.url}: {exc}", fatal=True) from exc
        except socket.gaierror as exc:
            raise TransportError(f"Cannot resolve the server name in {self.url} ({exc.strerror}).") from exc
        except (ConnectionRefusedError, OSError) as exc:
            raise TransportError(
                f"Cannot reach {self.url}: {exc.strerror or exc}. Is the server running?"
                " (a local engine starts with `parley engine`)"
            ) from exc
        except TimeoutError as exc:
            raise TransportError(
                f"Timed out connecting to {self.url} after {self.open_timeout:.0f} s."
            ) from exc
        except InvalidHandshake as exc:
            raise TransportError(f"WebSocket handshake with {self.url} failed: {exc}") from exc

    async def send(self, event: dict) -> None:
        from websockets.exceptions import ConnectionClosed

        if self._conn is None:
            raise ConnectionLost("not connected")
        try:
            await self._conn.send_raw(json.dumps(event))
        except ConnectionClosed as exc:
            raise ConnectionLost(f"connection to {self.url} closed ({exc})") from exc
        except Exception as exc:
            # openai-python wraps sends on a closed socket in its own error types.
            raise ConnectionLost(f"sending to {self.url} failed: {exc}") from exc

    async def recv(self) -> dict:
        from websockets.exceptions import ConnectionClosed

        if self._conn is None:
            raise ConnectionLost("not connected")
        try:
            data = await self._conn.recv_bytes()
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            reason = exc.rcvd.reason if exc.rcvd else ""
            # A policy (1008) or size (1009) close would only repeat on a new connection.
            raise ConnectionLost(
                f"connection to {self.url} closed (code {code}{', ' + reason if reason else ''})",
                fatal=not close_codes.should_reconnect(code),
            ) from exc
        return json.loads(data)

    def send_audio(self, pcm: np.ndarray) -> None:  # pragma: no cover - audio rides in events here
        raise NotImplementedError

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 2.0)
            except Exception:
                pass
