"""The ``oai-events`` data channel as a session EventSink.

The channel carries the same JSON events as the WebSocket, minus audio
deltas (the audio goes over RTP). Events emitted before the channel opens
wait for it, with ``session.created`` always first; messages the peer's SCTP
stack cannot take become an ``error`` event instead of vanishing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from aiortc import RTCDataChannel

from parley.protocol import ids

log = logging.getLogger(__name__)

# Events sent before the channel opens wait for it; a channel that never opens
# must not let them grow without bound.
MAX_PENDING_EVENTS = 1000


class DataChannelSink:
    """An EventSink writing JSON events to the ``oai-events`` channel, buffering until it opens."""

    def __init__(self, extensions: bool = False) -> None:
        self.extensions = extensions
        self.channel: RTCDataChannel | None = None
        self.sent = 0
        self._pending: list[dict[str, Any]] = []
        self.on_session_closed: Callable[[], None] | None = None  # set by the call

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
        item["content"] = [
            {k: v for k, v in part.items() if k != "audio"} if isinstance(part, dict) else part
            for part in item["content"]
        ]
    return {**event, "item": item}


def _too_large(event: dict[str, Any], size: int) -> dict[str, Any]:
    return {
        "type": "error",
        "event_id": ids.event_id(),
        "error": {
            "type": "server_error",
            "code": "message_too_large",
            "param": None,
            "event_id": None,
            "message": f"A {event['type']} event of {size} bytes exceeds the data channel's maximum message size.",
        },
    }
