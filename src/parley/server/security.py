"""Who may use the server's key: origin check, access token, mint rate limit, and page security headers.

The server holds a real API key and spends it on behalf of pages, so every
route that uses it (minting, the SDP relay, the WebSocket relay, the embedded
engine's ``/v1`` routes) must only serve our own page:

* **Origin**: a browser always sends ``Origin`` on fetches and WebSocket
  handshakes from another site; such requests are refused unless listed with
  ``--allow-origin``. Non-browser clients send none and pass.
* **Access token**: browsers on other machines can forge nothing, but anyone
  who can reach the port could script requests, so beyond loopback a shared
  token (``PARLEY_ACCESS_TOKEN``) is required.
* **Rate limit** on minting, per client address, so a leaked token cannot
  mint without bound.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from parley.httpapi import openai_error

ACCESS_TOKEN_HEADER = "x-parley-access-token"
ACCESS_TOKEN_SUBPROTOCOL = "parley-access-token."

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _header(scope: Scope, name: str) -> str | None:
    key = name.lower().encode()
    for k, v in scope.get("headers", []):
        if k.lower() == key:
            return v.decode("latin-1")
    return None


def _netloc(scheme: str, host: str) -> str:
    """``host[:port]`` lower-cased with the scheme's default port dropped."""
    host = host.strip().lower()
    default = {"http": ":80", "ws": ":80", "https": ":443", "wss": ":443"}.get(scheme)
    return host[: -len(default)] if default and host.endswith(default) else host


def origin_allowed(origin: str | None, host: str | None, scheme: str, allowed: Iterable[str]) -> bool:
    """No Origin (not a browser) or a same-origin/allow-listed Origin passes."""
    if origin is None:
        return True
    if origin == "null":  # sandboxed frames, file:// pages
        return False
    if origin.rstrip("/") in {a.rstrip("/") for a in allowed}:
        return True
    parts = urlsplit(origin)
    if not parts.netloc or host is None:
        return False
    # Compare authority only: a TLS-terminating proxy makes our scheme http while the page is https.
    return _netloc(parts.scheme, parts.netloc) == _netloc(scheme.replace("ws", "http"), host)


def token_matches(given: str | None, expected: str | None) -> bool:
    if expected is None:
        return True
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def subprotocol_access_token(protocols: Iterable[str]) -> str | None:
    for proto in protocols:
        if proto.startswith(ACCESS_TOKEN_SUBPROTOCOL):
            return proto[len(ACCESS_TOKEN_SUBPROTOCOL) :]
    return None


@dataclass
class RateLimiter:
    """A token bucket per client address: ``burst`` at once, then ``per_minute``."""

    per_minute: int
    burst: int
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # key → (tokens, last time)

    def allow(self, key: str) -> tuple[bool, float]:
        """(allowed, seconds until the next token) for one request from ``key``."""
        now = time.monotonic()
        rate = self.per_minute / 60.0
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * rate)
        if len(self._buckets) > 10_000:  # forget idle clients rather than grow without bound
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 600}
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return True, 0.0
        self._buckets[key] = (tokens, now)
        return False, (1.0 - tokens) / rate if rate > 0 else 60.0


async def deny_asgi(scope: Scope, receive: Receive, send: Send, status: int, message: str, code: str) -> None:
    """Refuse an HTTP request or a WebSocket handshake with the OpenAI error body."""
    body = json.dumps(openai_error(message, "invalid_request_error", code)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})


class OriginGuard:
    """Refuses cross-origin browser requests to the routes that spend the server's credentials."""

    def __init__(
        self, app: ASGIApp, allowed: list[str], prefixes: tuple[str, ...] = ("/api/", "/v1/")
    ) -> None:
        self.app = app
        self.allowed = allowed
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"].startswith(self.prefixes):
            # Preflights carry Origin too; refusing them is what keeps other sites out.
            origin = _header(scope, "origin")
            if not origin_allowed(origin, _header(scope, "host"), scope.get("scheme", "http"), self.allowed):
                await deny_asgi(
                    scope,
                    receive,
                    send,
                    403,
                    f"Requests from origin {origin!r} are not allowed. Open the page served by this "
                    "server, or start it with --allow-origin.",
                    "origin_not_allowed",
                )
                return
        await self.app(scope, receive, send)


def content_security_policy(host: str | None, extra_connect: Iterable[str] = ()) -> str:
    connect = ["'self'"]
    if host:
        # Older engines do not treat ws(s) of the page's host as 'self'.
        connect += [f"ws://{host}", f"wss://{host}"]
    connect += list(extra_connect)
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "media-src 'self' blob:",
            f"connect-src {' '.join(connect)}",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ]
    )


class SecurityHeaders:
    """Adds CSP and friends to every HTTP response (the page takes its access token from its URL:
    ``Referrer-Policy: no-referrer`` keeps it out of other sites' logs)."""

    def __init__(self, app: ASGIApp, extra_connect: list[str]) -> None:
        self.app = app
        self.extra_connect = extra_connect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = _header(scope, "host")
        if host is not None and not all(c.isalnum() or c in ".-:[]" for c in host):
            host = None  # never reflect a strange Host header into a header value
        csp = content_security_policy(host, self.extra_connect).encode()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for name, value in (
                    (b"content-security-policy", csp),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                    (b"permissions-policy", b"microphone=(self), camera=(), geolocation=()"),
                ):
                    if name not in present:
                        headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
