"""What the conversation needs from a transport (WebSocket or WebRTC), and its errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np


class TransportError(RuntimeError):
    """A connection problem, with a message written for the person at the terminal."""

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal  # retrying cannot help (bad key, bad URL)


class ConnectionLost(TransportError):
    pass


class Transport(Protocol):
    #: True when audio travels inside JSON events (WebSocket); False for RTP (WebRTC).
    audio_in_events: bool
    url: str

    async def connect(self) -> None: ...

    async def send(self, event: dict) -> None: ...

    async def recv(self) -> dict:
        """Next server event; raises :class:`ConnectionLost` when the connection drops."""
        ...

    async def close(self) -> None: ...

    # Media transports only (WebRTC): mic audio out, remote audio in.
    def send_audio(self, pcm: np.ndarray) -> None: ...

    on_audio: Callable[[np.ndarray], None] | None


def describe_http_status(status: int, url: str, body: str = "") -> TransportError:
    detail = f": {body.strip()[:300]}" if body.strip() else ""
    if status in (401, 403):
        return TransportError(
            f"The server at {url} rejected the API key (HTTP {status}){detail}.\n"
            "Check --api-key / OPENAI_API_KEY (for a Parley engine: PARLEY_ENGINE_KEY).",
            fatal=True,
        )
    if status == 404:
        return TransportError(f"{url} has no Realtime endpoint (HTTP 404). Check --url.", fatal=True)
    if status == 429:
        return TransportError(f"The server at {url} is busy (HTTP 429){detail}.")
    return TransportError(f"The server at {url} answered HTTP {status}{detail}.", fatal=400 <= status < 500)
