"""``POST /api/realtime/calls``: relay a WebRTC SDP offer to the upstream, and run server tools by sideband.

The page authenticates the call with the ``ek_`` secret it got from
``/api/session``; the upstream checks it. The answer goes back as SDP with a
``Location`` naming the call under ``/api/realtime/calls/``. An upstream that
answers with a JSON error (expired secret, bad offer, capacity) has its
message relayed, so the page shows it rather than failing to parse SDP.

After a call starts, a sideband WebSocket (``/v1/realtime?call_id=…`` with
the server's key) runs the server tools for it until the call ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx

from parley.server.asgi_ws import WebSocketClosed, WebSocketRefused
from parley.server.busy import upstream_busy
from parley.server.call_events import CallEvents
from parley.server.scenario import ScenarioFactory, ScenarioSession
from parley.server.tools import ToolRegistry, ToolRunner
from parley.server.upstream import Upstream, UpstreamUnreachable

log = logging.getLogger(__name__)


class CallError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        type_: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.type = type_
        self.headers = headers


def check_offer(raw: bytes, max_bytes: int) -> str:
    """A plausible SDP offer with an audio section, or a 4xx explaining what is wrong."""
    if not raw.strip():
        raise CallError(
            400, "The request body is empty; send the SDP offer as application/sdp.", "invalid_sdp"
        )
    if len(raw) > max_bytes:
        raise CallError(413, f"The SDP offer is {len(raw)} bytes; the limit is {max_bytes}.", "sdp_too_large")
    try:
        sdp = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CallError(400, "The SDP offer is not valid UTF-8 text.", "invalid_sdp") from None
    lines = [line.strip() for line in sdp.splitlines() if line.strip()]
    if not lines or lines[0] != "v=0" or not any(line.startswith("o=") for line in lines):
        raise CallError(
            400,
            "The body is not an SDP offer (it must start with 'v=0' and have an 'o=' line).",
            "invalid_sdp",
        )
    if not any(line.startswith("m=audio ") for line in lines):
        raise CallError(
            400, "The SDP offer has no audio section (m=audio); add a microphone track.", "sdp_no_audio"
        )
    return sdp


def _error_message(response: httpx.Response) -> tuple[str | None, str | None]:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None, None
    if isinstance(error, dict):
        return error.get("message"), error.get("code")
    if isinstance(error, str):
        return error, None
    return None, None


@dataclass
class CallAnswer:
    sdp: str
    call_id: str


async def relay_offer(upstream: Upstream, sdp: str, secret: str, query: dict[str, str]) -> CallAnswer:
    headers = {
        "Authorization": f"Bearer {secret}",
        "Content-Type": "application/sdp",
        "Accept": "application/sdp",
    }
    try:
        response = await upstream.http.post(
            "/realtime/calls", content=sdp.encode(), headers=headers, params=query or None
        )
    except httpx.TimeoutException:
        raise CallError(
            504,
            f"The realtime upstream ({upstream.label}) did not answer the offer in time.",
            "upstream_timeout",
            "server_error",
        ) from None
    except httpx.HTTPError as exc:
        log.warning("SDP relay to %s failed: %s", upstream.label, upstream.redact(repr(exc)))
        raise CallError(
            502,
            f"Could not reach the realtime upstream ({upstream.label}).",
            "upstream_unreachable",
            "server_error",
        ) from None
    body = response.text
    if response.status_code >= 400:
        message, code = _error_message(response)
        if busy := upstream_busy(response, upstream.redact(message or ""), code):
            raise CallError(503, busy.message, busy.code, "server_error", busy.headers)
        status = response.status_code if response.status_code < 500 else 502
        raise CallError(
            status,
            upstream.redact(message or f"The upstream answered HTTP {response.status_code}."),
            code or "upstream_error",
            "invalid_request_error" if status < 500 else "server_error",
        )
    if not body.lstrip().startswith("v=0"):
        # A 2xx that is not SDP (a JSON error, an HTML proxy page): say what it said.
        message, code = _error_message(response)
        raise CallError(
            502,
            upstream.redact(message or "The realtime upstream did not answer with SDP."),
            code or "upstream_bad_answer",
            "server_error",
        )
    location = response.headers.get("location", "")
    call_id = location.rstrip("/").rsplit("/", 1)[-1] if location else ""
    return CallAnswer(body, call_id)


class SidebandTools:
    """One sideband socket per live WebRTC call, running the server tools (and the call's
    scenario, if it has one) for it."""

    def __init__(self, upstream: Upstream, registry: ToolRegistry, max_seconds: int) -> None:
        self.upstream = upstream
        self.registry = registry
        self.max_seconds = max_seconds
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.runners: dict[str, ToolRunner] = {}
        self.scenarios: dict[str, ScenarioSession] = {}
        self.events = CallEvents()

    def start(
        self, call_id: str, query: dict[str, str] | None = None, scenario: ScenarioFactory | None = None
    ) -> None:
        if not (self.registry or scenario) or not call_id or call_id in self.tasks:
            return
        self.events.open(call_id)
        task = asyncio.create_task(self._run(call_id, query or {}, scenario))
        self.tasks[call_id] = task

        def ended(_t: asyncio.Task[None]) -> None:
            self.tasks.pop(call_id, None)
            self.events.close(call_id)

        task.add_done_callback(ended)

    async def _run(self, call_id: str, query: dict[str, str], scenario: ScenarioFactory | None) -> None:
        try:
            ws = await self.upstream.connect({**query, "call_id": call_id})
        except (WebSocketRefused, WebSocketClosed, UpstreamUnreachable, TimeoutError) as exc:
            log.warning("no sideband for call %s: %s", call_id, self.upstream.redact(str(exc)))
            return

        async def notify(event: dict[str, Any]) -> None:
            await self.events.publish(call_id, event)

        session = scenario(ws.send, notify, "webrtc") if scenario is not None else None
        runner = ToolRunner(session.tools if session else self.registry, ws.send, ensure_tools=True)
        self.runners[call_id] = runner
        if session is not None:
            self.scenarios[call_id] = session
            await notify(session.agent_event())
        try:
            async with asyncio.timeout(self.max_seconds):
                while True:
                    text = await ws.recv()
                    wanted = runner.interesting(text)
                    if session is not None:
                        wanted = session.peek(text) == "observe" or wanted
                    if wanted:
                        with contextlib.suppress(ValueError):
                            event: Any = json.loads(text)
                            if isinstance(event, dict):
                                if session is not None:
                                    session.observe(event)
                                runner.observe(event)
        except WebSocketClosed:
            pass  # the call ended
        except TimeoutError:
            log.info("sideband for call %s reached its time limit", call_id)
        finally:
            self.runners.pop(call_id, None)
            self.scenarios.pop(call_id, None)
            await runner.close()
            if session is not None:
                await session.close()
            await ws.close(1000, "sideband done")

    async def stop(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
