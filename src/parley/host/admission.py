"""Admission control: a session beyond capacity, or on a draining node, is refused at once.

Refusing costs one comparison, before any model or media work, so admitted
sessions never pay for it. A refusal says how long to wait:

* HTTP (``/v1/realtime/calls``, ``/v1/realtime/client_secrets``, and the
  ``parley serve`` routes that relay them): ``503`` with ``Retry-After`` and
  the OpenAI error body (``server_error``; openai-python retries a 503 by
  itself, honouring ``Retry-After``);
* WebSocket (``/v1/realtime``): the handshake completes, an ``error`` event
  explains, and the socket closes with ``1013 Try Again Later`` and the
  reason ``busy, retry in N s``: browsers can read a close code and reason,
  never the body of a refused handshake.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass

from fastapi.responses import JSONResponse
from starlette.websockets import WebSocket

from parley.httpapi import openai_error
from parley.protocol import close_codes, ids

BUSY = "session_limit_reached"
DRAINING = "server_draining"
LOADING = "engine_loading"

_REASON_RE = re.compile(r"retry in (\d+) s", re.IGNORECASE)


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str
    retry_after: int  # seconds

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}

    @property
    def close_reason(self) -> str:
        """What a WebSocket close carries (≤ 123 bytes); :func:`retry_after_from_reason` reads it back."""
        what = "shutting down" if self.code == DRAINING else "busy"
        return f"{what}, retry in {self.retry_after} s"

    def response(self) -> JSONResponse:
        return JSONResponse(
            openai_error(self.message, "server_error", self.code), status_code=503, headers=self.headers
        )

    def error_event(self) -> dict[str, object]:
        return {
            "type": "error",
            "event_id": ids.event_id(),
            "error": {
                "type": "server_error",
                "code": self.code,
                "message": self.message,
                "param": None,
                "event_id": None,
            },
        }


def busy(sessions: int, capacity: int, retry_after: int) -> Refusal:
    return Refusal(
        BUSY,
        f"Busy, retry in {retry_after} s: all {capacity} session slots of this engine are in use.",
        retry_after,
    )


def draining(retry_after: int = 1) -> Refusal:
    return Refusal(
        DRAINING,
        f"Shutting down, retry in {retry_after} s: this node takes no new sessions "
        "(behind a load balancer the retry goes to another node).",
        retry_after,
    )


def loading(retry_after: int = 5) -> Refusal:
    return Refusal(
        LOADING, f"Loading, retry in {retry_after} s: the engine is still loading its models.", retry_after
    )


def retry_after_from_reason(reason: str) -> int | None:
    match = _REASON_RE.search(reason)
    return int(match.group(1)) if match else None


async def refuse_websocket(ws: WebSocket, refusal: Refusal, subprotocol: str | None = None) -> None:
    """Complete the handshake, explain in an ``error`` event, close with 1013 and the reason."""
    with contextlib.suppress(Exception):
        await ws.accept(subprotocol=subprotocol)
        await ws.send_text(json.dumps(refusal.error_event(), separators=(",", ":")))
        await ws.close(code=close_codes.OVERLOADED, reason=refusal.close_reason)
