"""The realtime provider behind ``parley serve``: the embedded engine or a remote server.

Both speak the same OpenAI Realtime surface (``/v1/realtime/client_secrets``,
``/v1/realtime/calls``, WebSocket ``/v1/realtime``), so the routes above this
module do not care which it is:

* :class:`LocalUpstream` runs an :class:`EngineRuntime` in this process and
  reaches its ASGI routes without a socket (httpx's ASGITransport for HTTP,
  :class:`AsgiWebSocket` for WebSockets).
* :class:`RemoteUpstream` talks to OpenAI, or any compatible server, over
  the network with the server's key.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Protocol

import httpx
import websockets
from fastapi import FastAPI

from parley.host.app import engine_router
from parley.host.runtime import EngineRuntime
from parley.httpapi import is_loopback
from parley.server.asgi_ws import AsgiWebSocket, WebSocketRefused
from parley.server.config import ServerConfig, UpstreamKind
from parley.server.frames import RemoteSocket

log = logging.getLogger(__name__)
# websockets logs handshake headers, Authorization included, at DEBUG: never let it, whatever -vv says.
_ws_log = logging.getLogger("parley.server.upstream.websockets")
_ws_log.setLevel(logging.INFO)


class UpstreamUnreachable(Exception):
    """The upstream could not be reached at all (connection refused, DNS, timeout)."""


class UpstreamSocket(Protocol):
    subprotocol: str | None

    async def send(self, text: str) -> None: ...

    async def recv(self) -> str:
        """The next text frame; raises :class:`WebSocketClosed` once the upstream has closed."""
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class Upstream(Protocol):
    kind: UpstreamKind
    http: httpx.AsyncClient

    @property
    def label(self) -> str: ...

    def auth_headers(self) -> dict[str, str]: ...

    def redact(self, text: str) -> str: ...

    async def connect(self, query: dict[str, str], open_timeout: float = 10.0) -> UpstreamSocket: ...

    async def start(self, progress: Callable[[str, str], None] | None = None) -> None: ...

    async def stop(self) -> None: ...


class _Redactor:
    key: str | None

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def redact(self, text: str) -> str:
        """Upstream error messages may quote the key (OpenAI echoes part of a wrong one)."""
        return text.replace(self.key, "[redacted]") if self.key else text


class LocalUpstream(_Redactor):
    kind: UpstreamKind = "local"

    def __init__(self, runtime: EngineRuntime, *, bound_to_loopback: bool = True) -> None:
        self.runtime = runtime
        if runtime.config.api_key is None and not bound_to_loopback:
            # The engine's key-less mode trusts loopback peers; behind a proxy everyone looks local.
            # A private key keeps the mounted /v1 routes to ek_ secrets minted through /api/session.
            runtime.config.api_key = secrets.token_urlsafe(32)
            runtime.auth.api_key = runtime.config.api_key
        self.key = runtime.config.api_key
        self.app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
        self.app.include_router(engine_router(runtime))
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, client=("127.0.0.1", 0)),
            base_url="http://engine.internal/v1",
            timeout=60.0,
        )

    @property
    def label(self) -> str:
        models = self.runtime.models
        llm = getattr(getattr(models, "llm", None), "name", None)
        return f"local engine (in-process{', LLM ' + llm if llm else ''})"

    async def connect(self, query: dict[str, str], open_timeout: float = 10.0) -> UpstreamSocket:
        ws = AsgiWebSocket(
            self.app, "/v1/realtime", query, headers=self.auth_headers(), subprotocols=["realtime"]
        )
        return await ws.connect(open_timeout)

    async def start(self, progress: Callable[[str, str], None] | None = None) -> None:
        await self.runtime.start(progress)

    async def stop(self) -> None:
        await self.runtime.stop()
        await self.http.aclose()


class RemoteUpstream(_Redactor):
    def __init__(
        self,
        base_url: str,
        key: str | None,
        kind: UpstreamKind,
        max_message_bytes: int,
        timeout: float = 15.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.kind = kind
        self.max_message_bytes = max_message_bytes
        self.timeout = timeout
        self.ws_url = "ws" + self.base_url.removeprefix("http") + "/realtime"
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=httpx.Timeout(timeout, connect=5.0))

    @property
    def label(self) -> str:
        return "OpenAI" if self.kind == "openai" else self.base_url

    async def connect(self, query: dict[str, str], open_timeout: float = 10.0) -> UpstreamSocket:
        url = str(httpx.URL(self.ws_url, params=query)) if query else self.ws_url
        sock = RemoteSocket()
        try:
            conn = await websockets.connect(
                url,
                additional_headers=self.auth_headers(),
                max_size=self.max_message_bytes,
                open_timeout=open_timeout,
                ping_interval=None,
                # permessage-deflate would cost more CPU than everything else the relay does per frame,
                # on audio that barely compresses.
                compression=None,
                # Relayed events should leave at once; small frames are the common case.
                write_limit=2**20,
                logger=_ws_log,
                # Frames go to RemoteSocket (and from there straight to the browser), not websockets' queue.
                create_connection=sock.connection_factory,  # type: ignore[arg-type]
            )
        except websockets.InvalidStatus as exc:
            raise WebSocketRefused(exc.response.status_code, exc.response.body or b"") from None
        except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
            raise UpstreamUnreachable(f"{type(exc).__name__}: {exc}") from None
        return sock.opened(conn)

    async def start(self, progress: Callable[[str, str], None] | None = None) -> None:
        return None

    async def stop(self) -> None:
        await self.http.aclose()


def build_upstream(config: ServerConfig, runtime: EngineRuntime | None = None) -> Upstream:
    if config.upstream_url is None:
        runtime = runtime or EngineRuntime(config.engine)
        return LocalUpstream(runtime, bound_to_loopback=is_loopback(config.host))
    return RemoteUpstream(
        config.upstream_url,
        config.upstream_key,
        config.upstream_kind,
        config.max_message_bytes,
        config.upstream_timeout,
    )
