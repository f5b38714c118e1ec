"""``POST /api/session``: mint an ephemeral ``ek_`` secret upstream for the page.

The page asks for a partial GA session; the server keeps only the fields a
page may set, checks them with the protocol's own validation and limits,
adds the server tools, and asks the upstream's ``/v1/realtime/client_secrets``
for a short-lived secret. The real key never leaves the server.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx

from parley.protocol.errors import ProtocolError
from parley.protocol.session_config import apply_update, default_session
from parley.server.busy import upstream_busy
from parley.server.config import ServerConfig
from parley.server.tools import ToolRegistry
from parley.server.upstream import Upstream

log = logging.getLogger(__name__)

# Which session fields a page may choose (everything else is the server's decision: model,
# tracing, prompt, include…). Values are nested allow-lists; True means "the whole value".
ALLOWED: dict[str, Any] = {
    "type": True,
    "instructions": True,
    "output_modalities": True,
    "tools": True,
    "tool_choice": True,
    "max_output_tokens": True,
    "audio": {
        "input": {"turn_detection": True, "transcription": True, "noise_reduction": True, "format": True},
        "output": {"voice": True, "speed": True, "format": True},
    },
}


class MintError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        param: str | None = None,
        type_: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type_
        self.headers = headers


def _check_allowed(value: Any, allowed: dict[str, Any], path: str) -> None:
    if not isinstance(value, dict):
        raise MintError(400, f"Invalid '{path}': expected an object.", "invalid_value", path)
    for key, sub in value.items():
        p = f"{path}.{key}"
        rule = allowed.get(key)
        if rule is None:
            raise MintError(
                400, f"The field '{p}' cannot be set by the page on this server.", "unknown_parameter", p
            )
        if isinstance(rule, dict) and sub is not None:
            _check_allowed(sub, rule, p)


def build_session(request: Any, config: ServerConfig, registry: ToolRegistry) -> dict[str, Any]:
    """The session config to mint with, from the page's ``{"session": {...}}`` body."""
    if request is None:
        request = {}
    if not isinstance(request, dict):
        raise MintError(
            400, 'The request body must be a JSON object like {"session": {...}}.', "invalid_json"
        )
    unknown = set(request) - {"session"}
    if unknown:
        name = sorted(unknown)[0]
        raise MintError(
            400, f"Unknown field '{name}'; send {{\"session\": {{...}}}}.", "unknown_parameter", name
        )
    session = request.get("session") or {}
    _check_allowed(session, ALLOWED, "session")
    session = {**session, "type": session.get("type", "realtime")}
    if session["type"] != "realtime":
        raise MintError(400, "Only realtime sessions can be minted here.", "invalid_value", "session.type")

    instructions = session.get("instructions")
    if isinstance(instructions, str) and len(instructions) > config.max_instructions_chars:
        raise MintError(
            400,
            f"Instructions are {len(instructions)} characters; the limit is {config.max_instructions_chars}.",
            "instructions_too_long",
            "session.instructions",
        )
    tools = session.get("tools")
    if isinstance(tools, list) and len(tools) > config.max_tools:
        raise MintError(
            400,
            f"{len(tools)} tools requested; the limit is {config.max_tools}.",
            "too_many_tools",
            "session.tools",
        )
    try:
        # The protocol's own checks, so the page gets the same messages as from a session.update.
        apply_update(default_session(), session)
    except ProtocolError as err:
        raise MintError(400, err.message, err.code, err.param) from None
    if registry:
        session["tools"] = registry.merge(session.get("tools"))
    session["model"] = config.model
    return session


async def mint_secret(upstream: Upstream, session: dict[str, Any], ttl: int) -> dict[str, Any]:
    """Ask the upstream for a secret; returns ``{value, expires_at, session}``."""
    body = {"expires_after": {"anchor": "created_at", "seconds": ttl}, "session": session}
    try:
        response = await upstream.http.post(
            "/realtime/client_secrets", json=body, headers=upstream.auth_headers()
        )
    except httpx.HTTPError as exc:
        log.warning("minting at %s failed: %s", upstream.label, upstream.redact(repr(exc)))
        raise MintError(
            502,
            f"Could not reach the realtime upstream ({upstream.label}).",
            "upstream_unreachable",
            type_="server_error",
        ) from None
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if response.status_code in (401, 403):
        log.error("upstream refused the server's key while minting: %s", upstream.redact(response.text[:300]))
        raise MintError(
            502,
            "The realtime upstream refused the server's credentials.",
            "upstream_auth_failed",
            type_="server_error",
        )
    if response.status_code >= 400:
        error = (payload or {}).get("error") if isinstance(payload, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        if busy := upstream_busy(response, upstream.redact(message or ""), (error or {}).get("code")):
            raise MintError(503, busy.message, busy.code, type_="server_error", headers=busy.headers)
        status = response.status_code if response.status_code < 500 else 502
        raise MintError(
            status,
            upstream.redact(message or f"The upstream answered HTTP {response.status_code}."),
            (error or {}).get("code") or "upstream_error",
            (error or {}).get("param"),
        )
    if not (isinstance(payload, dict) and isinstance(payload.get("value"), str)):
        raise MintError(
            502,
            "The realtime upstream answered without a client secret.",
            "upstream_error",
            type_="server_error",
        )
    return {
        "value": payload["value"],
        "expires_at": payload.get("expires_at"),
        "session": payload.get("session"),
    }


def parse_json(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise MintError(400, "The request body is not valid JSON.", "invalid_json") from None
