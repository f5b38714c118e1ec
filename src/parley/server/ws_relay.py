"""``WS /api/realtime/ws``: a browser WebSocket session relayed to the upstream with the server's key.

Frames pass through as text. Only three kinds are parsed on the way: the
page's ``session.update`` (server tools are added to its ``tools``), and the
upstream's tool-call and response-done events (the relay answers server tools
itself). Audio frames, the bulk, are forwarded untouched.

Either side closing closes the other with a reason; both pump tasks, the tool
runner and the upstream socket are gone when :func:`relay_websocket` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from parley.httpapi import deny
from parley.server.asgi_ws import WebSocketClosed, WebSocketRefused
from parley.server.frames import FRAMES_EXTENSION, FrameEndpoint, RemoteSocket
from parley.server.scenario import ScenarioFactory, ScenarioSession
from parley.server.tools import ToolRegistry, ToolRunner
from parley.server.upstream import Upstream, UpstreamSocket, UpstreamUnreachable

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT_S = 10.0
# Codes a server may not send in a close frame; they describe what happened, not what to send.
_RESERVED_CLOSE_CODES = {1004, 1005, 1006, 1015}


def _close_code(code: int) -> int:
    if code in _RESERVED_CLOSE_CODES or not (1000 <= code < 5000):
        return 1011 if code != 1005 else 1000
    return code


def _reason(text: str) -> str:
    return text.encode()[:123].decode("utf-8", "ignore")  # a close reason is at most 123 bytes


class RelayStats:
    """Live relay counts for /healthz and the benchmark."""

    def __init__(self) -> None:
        self.active = 0
        self.total = 0


async def connect_upstream(ws: WebSocket, upstream: Upstream, query: dict[str, str]) -> UpstreamSocket | None:
    """Open the upstream session, or refuse the browser's handshake with a useful status."""
    try:
        return await upstream.connect(query, HANDSHAKE_TIMEOUT_S)
    except WebSocketRefused as exc:
        if exc.status in (401, 403):
            # Our own key was refused: a server problem the page cannot fix, and the message may name it.
            log.error(
                "upstream %s refused the server's credentials: %s",
                upstream.label,
                upstream.redact(exc.message()),
            )
            await deny(
                ws, 502, "The realtime upstream refused the server's credentials.", "upstream_auth_failed"
            )
        else:
            await deny(
                ws,
                exc.status if 400 <= exc.status < 600 else 502,
                upstream.redact(exc.message()),
                "upstream_refused",
            )
    except (UpstreamUnreachable, TimeoutError, WebSocketClosed) as exc:
        log.warning("upstream %s unreachable: %s", upstream.label, upstream.redact(str(exc)))
        await deny(
            ws, 502, f"Could not reach the realtime upstream ({upstream.label}).", "upstream_unreachable"
        )
    return None


async def _inject_on_open(
    upstream_ws: UpstreamSocket, update: Callable[[dict[str, Any]], dict[str, Any]]
) -> str:
    """Give the new session what the server adds (its tools; a scenario's first agent) before the
    page sees it.

    Returns the ``session.created`` text to forward, with the session as it is
    after our update, so the page's first view already lists the tools.
    """
    async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
        created_text = await upstream_ws.recv()
        created = json.loads(created_text)
        if created.get("type") != "session.created":
            return created_text
        await upstream_ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "event_id": "parley_server_tools_init",
                    "session": update(created.get("session") or {}),
                }
            )
        )
        while True:
            reply = json.loads(await upstream_ws.recv())
            if reply.get("type") == "session.updated":
                created["session"] = reply["session"]
                return json.dumps(created, separators=(",", ":"))
            if reply.get("type") == "error":
                log.warning(
                    "upstream refused the server tools: %s", (reply.get("error") or {}).get("message")
                )
                return created_text


def rewrite_session_update(text: str, registry: ToolRegistry) -> str:
    """Add the server tools to a page ``session.update`` that sets ``tools``."""
    try:
        event = json.loads(text)
    except ValueError:
        return text  # the upstream reports malformed JSON itself
    if not isinstance(event, dict) or event.get("type") != "session.update":
        return text
    session = event.get("session")
    if not isinstance(session, dict):
        return text
    rewritten = registry.rewrite(copy.deepcopy(session))
    if rewritten == session:
        return text  # untouched frames pass byte for byte
    event["session"] = rewritten
    return json.dumps(event, separators=(",", ":"))


class _Notifier:
    """Sends ``parley.*`` events to a client that opted in (``?parley_events=1``); the relay
    points it at whichever way it writes to the client."""

    def __init__(self, ws: WebSocket, enabled: bool) -> None:
        self.enabled = enabled
        self.send_now: Callable[[str], None] | None = None
        self.ws = ws

    async def __call__(self, event: dict[str, Any]) -> None:
        if not self.enabled:
            return
        text = json.dumps(event, separators=(",", ":"))
        if self.send_now is not None:
            self.send_now(text)
        else:
            await self.ws.send_text(text)


async def relay_websocket(
    ws: WebSocket,
    upstream: Upstream,
    registry: ToolRegistry,
    query: dict[str, str],
    stats: RelayStats | None = None,
    scenario: ScenarioFactory | None = None,
    extensions: bool = False,
) -> None:
    """Relay one session; with ``scenario`` its agents, supervisor and guardrails run here, and
    ``extensions`` (the client opted in) lets ``parley.*`` events through to the client."""
    upstream_ws = await connect_upstream(ws, upstream, query)
    if upstream_ws is None:
        return
    offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    notifier = _Notifier(ws, extensions)
    session = scenario(upstream_ws.send, notifier, "websocket") if scenario is not None else None
    if session is not None:
        registry = session.tools
    runner = ToolRunner(registry, upstream_ws.send) if registry else None
    closed_by: dict[str, Any] = {}
    if stats:
        stats.active += 1
        stats.total += 1
    try:
        first: str | None = None
        if registry:
            update: Callable[[dict[str, Any]], dict[str, Any]] = (
                session.initial_update
                if session is not None
                else lambda created: {"type": "realtime", "tools": registry.merge(created.get("tools"))}
            )
            try:
                first = await _inject_on_open(upstream_ws, update)
            except (WebSocketClosed, TimeoutError, ValueError) as exc:
                await deny(ws, 502, f"The realtime upstream did not open a session: {exc}", "upstream_error")
                return
        await ws.accept(subprotocol="realtime" if "realtime" in offered else None)
        if first is not None:
            with contextlib.suppress(ValueError):
                event = json.loads(first)
                if runner is not None:
                    runner.observe(event)
                if session is not None:
                    session.observe(event)
            await ws.send_text(first)
        if session is not None:
            await notifier(session.agent_event())
        browser_frames = ws.scope.get("extensions", {}).get(FRAMES_EXTENSION)
        if browser_frames is not None and isinstance(upstream_ws, RemoteSocket):
            notifier.send_now = browser_frames.send_now
            await _relay_frames(ws, browser_frames, upstream_ws, registry, runner, session, closed_by)
        else:
            await _relay_pumps(ws, upstream_ws, registry, runner, session, closed_by)
        if "upstream" in closed_by:
            code, reason = closed_by["upstream"]
            if ws.application_state != WebSocketState.DISCONNECTED:
                with contextlib.suppress(Exception):
                    await ws.close(
                        _close_code(code),
                        _reason(f"upstream closed: {reason}" if reason else "upstream closed the session"),
                    )
        else:
            code = closed_by.get("browser", 1000)
            await upstream_ws.close(_close_code(code), "client disconnected")
    finally:
        if runner is not None:
            await runner.close()
        if session is not None:
            await session.close()
        await upstream_ws.close(1001, "relay closed")
        if ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await ws.close(1011, "relay error")
        if stats:
            stats.active -= 1


def _to_upstream(text: str, registry: ToolRegistry) -> str:
    """A page event on its way up: only ``session.update`` is parsed (to keep the server tools)."""
    if registry and '"session.update"' in text:
        return rewrite_session_update(text, registry)
    return text


def _to_browser(text: str, runner: ToolRunner | None, session: ScenarioSession | None = None) -> bool:
    """Whether an upstream event goes on to the page; tool calls and their results are acted on here."""
    wanted = runner is not None and runner.interesting(text)
    if session is not None:
        verdict = session.peek(text)
        if verdict == "drop":
            return False
        wanted = wanted or verdict == "observe"
    if not wanted:
        return True
    try:
        event = json.loads(text)
    except ValueError:
        return True
    if not isinstance(event, dict):
        return True
    forward = True
    if session is not None and not session.observe(event):
        forward = False
    if runner is not None and not runner.observe(event):
        forward = False
    return forward


async def _relay_frames(
    ws: WebSocket,
    browser: FrameEndpoint,
    upstream_ws: RemoteSocket,
    registry: ToolRegistry,
    runner: ToolRunner | None,
    session: ScenarioSession | None,
    closed_by: dict[str, Any],
) -> None:
    """Relay with each frame forwarded inside the read callback of the socket it came from.

    No task, queue or lock per frame: the callbacks check the frame, write it
    to the other socket and return. This task only waits for either side to
    end; the browser's disconnect still arrives through ASGI ``receive``.
    """
    ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def end(side: str, info: Any) -> None:
        closed_by.setdefault(side, info)
        if not ended.done():
            ended.set_result(None)

    def up(text: str) -> None:
        try:
            upstream_ws.send_now(_to_upstream(text, registry))
        except WebSocketClosed as exc:
            end("upstream", (exc.code, exc.reason))
        except Exception:
            log.exception("relay: a browser frame could not be forwarded")
            end("error", None)

    def down(text: str) -> None:
        try:
            if _to_browser(text, runner, session):
                browser.send_now(text)
        except WebSocketClosed:
            end("browser", 1001)
        except Exception:
            log.exception("relay: an upstream frame could not be forwarded")
            end("error", None)

    def drop(text: str) -> None:
        return None

    # A slow reader on one side stops reads on the other, as the pumps' awaited sends did.
    upstream_ws.on_write_pressure(browser.pause_reading, browser.resume_reading)
    browser.on_write_pressure(upstream_ws.pause_reading, upstream_ws.resume_reading)
    upstream_ws.on_closed(lambda code, reason: end("upstream", (code, reason)))
    browser.attach(up)
    upstream_ws.attach(down)

    async def browser_gone() -> None:
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    end("browser", message.get("code", 1000))
                    return
                up(message.get("text") or (message.get("bytes") or b"").decode("utf-8", "replace"))
        except (WebSocketDisconnect, RuntimeError, OSError):
            end("browser", 1001)

    disconnect = asyncio.create_task(browser_gone())
    try:
        await ended
    finally:
        # Nothing more is forwarded; reads resume so both closing handshakes can complete.
        browser.attach(drop)
        upstream_ws.attach(drop)
        upstream_ws.on_write_pressure(_nothing, _nothing)
        browser.on_write_pressure(_nothing, _nothing)
        upstream_ws.on_closed(lambda code, reason: None)
        browser.resume_reading()
        upstream_ws.resume_reading()
        disconnect.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await disconnect


def _nothing() -> None:
    return None


async def _relay_pumps(
    ws: WebSocket,
    upstream_ws: UpstreamSocket,
    registry: ToolRegistry,
    runner: ToolRunner | None,
    session: ScenarioSession | None,
    closed_by: dict[str, Any],
) -> None:
    """Relay with a pump task per direction, for upstreams and servers without frame endpoints
    (the in-process engine, or an ASGI server other than ``parley serve``'s uvicorn)."""
    down = asyncio.create_task(_downstream(ws, upstream_ws, runner, session, closed_by))
    up = asyncio.create_task(_upstream(ws, upstream_ws, registry, closed_by))
    try:
        await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (down, up):
            task.cancel()
        for task in (down, up):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _downstream(
    ws: WebSocket,
    upstream_ws: UpstreamSocket,
    runner: ToolRunner | None,
    session: ScenarioSession | None,
    closed_by: dict[str, Any],
) -> None:
    """Upstream → browser."""
    try:
        while True:
            text = await upstream_ws.recv()
            if _to_browser(text, runner, session):
                await ws.send_text(text)
    except WebSocketClosed as exc:
        closed_by["upstream"] = (exc.code, exc.reason)
    except (WebSocketDisconnect, RuntimeError, OSError):
        closed_by.setdefault("browser", 1001)


async def _upstream(
    ws: WebSocket, upstream_ws: UpstreamSocket, registry: ToolRegistry, closed_by: dict[str, Any]
) -> None:
    """Browser → upstream."""
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                closed_by["browser"] = message.get("code", 1000)
                return
            text = message.get("text")
            if text is None:
                raw = message.get("bytes") or b""
                text = raw.decode("utf-8", "replace")
            await upstream_ws.send(_to_upstream(text, registry))
    except WebSocketClosed as exc:
        closed_by["upstream"] = (exc.code, exc.reason)
    except (WebSocketDisconnect, RuntimeError, OSError):
        closed_by.setdefault("browser", 1001)
