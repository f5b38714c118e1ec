"""The OpenAI-style HTTP surface shared by the engine host, its transports and the web app.

Error bodies, bearer tokens and WebSocket denials look the same whichever
of them answers, so a client sees one API.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from fastapi import WebSocket
from fastapi.responses import JSONResponse


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host in ("localhost", "testclient"):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def openai_error(
    message: str, type_: str = "invalid_request_error", code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """The standard OpenAI HTTP error body."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def subprotocol_token(protocols: list[str]) -> str | None:
    """Browsers pass the key as a WebSocket subprotocol ``openai-insecure-api-key.<key>``."""
    for proto in protocols:
        if proto.startswith("openai-insecure-api-key."):
            return proto[len("openai-insecure-api-key.") :]
    return None


async def deny(ws: WebSocket, status: int, message: str, code: str | None) -> None:
    error_type = "invalid_request_error" if status != 429 else "rate_limit_error"
    try:
        await ws.send_denial_response(
            JSONResponse(openai_error(message, error_type, code), status_code=status)
        )
    except RuntimeError:
        # Without denial responses the close code carries the verdict: overload (1013)
        # is worth retrying, every other refusal is a policy close (1008).
        await ws.close(code=1013 if status == 429 else 1008, reason=message[:120])
