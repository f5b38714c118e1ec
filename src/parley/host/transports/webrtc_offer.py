"""Reading and checking a ``POST /v1/realtime/calls`` request.

Both forms of the spec: raw ``application/sdp`` (browsers, the JS SDK) and
``multipart/form-data`` with ``sdp`` and ``session`` parts (openai-python's
``calls.create``). Anything wrong becomes a :class:`CallError`, answered with
the OpenAI JSON error body and a precise message.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.responses import JSONResponse

from parley.httpapi import openai_error

SDP_CONTENT_TYPES = ("application/sdp", "text/plain", "")


class CallError(Exception):
    """A refused call request: becomes an OpenAI-style HTTP error."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        param: str | None = None,
        type_: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.type = status, message, code, param, type_
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse(
            openai_error(self.message, self.type, self.code, self.param),
            status_code=self.status,
            headers={
                "Access-Control-Allow-Origin": "*",
                "Access-Control-Expose-Headers": "Retry-After",
                **self.headers,
            },
        )


async def read_offer(request: Request, limit: int) -> tuple[str, dict[str, Any] | None, str | None]:
    """(offer SDP, multipart session config or None, multipart parley_metrics flag)."""
    body = await _read_body(request, limit)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return await _read_multipart(request, body)
    if content_type not in SDP_CONTENT_TYPES:
        raise CallError(
            415,
            f"Unsupported Content-Type '{content_type}': send the offer as application/sdp "
            "or as multipart/form-data with 'sdp' and 'session' parts.",
            "unsupported_media_type",
        )
    return _decode(body, "body"), None, None


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    too_large = CallError(413, f"The request body is larger than {limit} bytes.", "request_too_large")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


async def _read_multipart(request: Request, body: bytes) -> tuple[str, dict[str, Any] | None, str | None]:
    delivered = False

    async def replay() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=4, max_fields=8)
    except Exception:
        raise CallError(400, "The multipart body could not be parsed.", "invalid_multipart") from None
    try:
        parts = {key: await _part_text(form.get(key), key) for key in ("sdp", "session", "parley_metrics")}
    finally:
        await form.close()
    if not parts["sdp"]:
        raise CallError(400, "Missing required parameter: 'sdp'.", "missing_required_parameter", "sdp")
    session = None
    if parts["session"]:
        try:
            session = json.loads(parts["session"])
        except ValueError:
            raise CallError(400, "The 'session' part is not valid JSON.", "invalid_json", "session") from None
        if not isinstance(session, dict):
            raise CallError(400, "The 'session' part must be a JSON object.", "invalid_value", "session")
    return parts["sdp"], session, parts["parley_metrics"]


async def _part_text(value: str | UploadFile | None, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return _decode(await value.read(), name)


def _decode(data: bytes, param: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CallError(400, "The SDP offer is not UTF-8 text.", "invalid_offer", param) from None


def check_offer(offer: str) -> None:
    """Cheap structural checks with precise messages; aiortc judges the rest."""
    lines = [line.strip() for line in offer.strip().splitlines()]
    if not lines or lines[0] != "v=0":
        raise CallError(
            400, "The body is not an SDP offer (it must start with 'v=0').", "invalid_offer", "sdp"
        )
    if not any(line.startswith("m=audio") for line in lines):
        raise CallError(
            400, "The SDP offer has no audio m-line; a call needs an audio track.", "invalid_offer", "sdp"
        )
    # aiortc accepts an offer without a fingerprint and only fails once DTLS starts.
    for attribute, what in (
        ("a=fingerprint:", "DTLS fingerprint"),
        ("a=ice-ufrag:", "ICE username fragment"),
        ("a=ice-pwd:", "ICE password"),
    ):
        if not any(line.startswith(attribute) for line in lines):
            raise CallError(400, f"The SDP offer has no {what} ('{attribute[:-1]}').", "invalid_offer", "sdp")


def merge_updates(updates: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Layer session updates (secret's, then the request's): later fields win, ``audio`` merges per field."""
    if not updates:
        return None
    merged: dict[str, Any] = {}
    for update in updates:
        for key, value in update.items():
            if key == "audio" and isinstance(value, dict) and isinstance(merged.get("audio"), dict):
                audio = dict(merged["audio"])
                for side in ("input", "output"):
                    if isinstance(value.get(side), dict) and isinstance(audio.get(side), dict):
                        audio[side] = {**audio[side], **value[side]}
                    elif side in value:
                        audio[side] = value[side]
                merged["audio"] = audio
            else:
                merged[key] = value
    return merged
