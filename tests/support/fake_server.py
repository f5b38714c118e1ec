"""A tiny Realtime-protocol server for unit tests of the client's orchestration.

It answers session.update, plays a tone as the assistant's reply, emits VAD
events on demand and records what the client sent. Real-model behaviour is
covered by the end-to-end tests against ``parley engine``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Response

from parley.protocol import ids
from parley.protocol.audio_formats import AudioFormat, OutputEncoder
from parley.protocol.session_config import apply_update, default_session, wire_session
from tests.support.audio import tone


@dataclass
class FakeServer:
    port: int = 0
    key: str = "good"
    reply_seconds: float = 3.0
    received: list[dict] = field(default_factory=list)
    connections: list[ServerConnection] = field(default_factory=list)
    sessions: list[dict] = field(default_factory=list)
    item_audio_ms: dict[str, float] = field(default_factory=dict)
    _server: Any = None

    def events(self, kind: str) -> list[dict]:
        return [e for e in self.received if e.get("type") == kind]

    async def wait_event(self, kind: str, timeout: float = 5.0) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                found = self.events(kind)
                if found:
                    return found[-1]
                await asyncio.sleep(0.01)

    def _auth(self, conn: ServerConnection, request: Any) -> Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return conn.respond(
                401, '{"error":{"message":"Incorrect API key provided","code":"invalid_api_key"}}\n'
            )
        return None

    async def _send(self, conn: ServerConnection, event: dict) -> None:
        event.setdefault("event_id", ids.event_id())
        await conn.send(json.dumps(event))

    async def _handler(self, conn: ServerConnection) -> None:
        self.connections.append(conn)
        session = default_session()
        self.sessions.append(session)
        await self._send(conn, {"type": "session.created", "session": wire_session(session)})
        active: dict[str, Any] = {}
        try:
            async for raw in conn:
                ev = json.loads(raw)
                self.received.append(ev)
                kind = ev.get("type")
                if kind == "session.update":
                    session.update(apply_update(session, ev["session"]))
                    await self._send(conn, {"type": "session.updated", "session": wire_session(session)})
                elif kind == "response.create":
                    fmt = AudioFormat.from_json(session["audio"]["output"]["format"])
                    active["task"] = asyncio.create_task(self._respond(conn, active, OutputEncoder(fmt)))
                elif kind == "response.cancel":
                    task = active.get("task")
                    if task is None or task.done():
                        await self._send(
                            conn,
                            {
                                "type": "error",
                                "error": {
                                    "type": "invalid_request_error",
                                    "code": "response_cancel_not_active",
                                    "message": "Cancellation failed: no active response found",
                                    "event_id": ev.get("event_id"),
                                },
                            },
                        )
                    else:
                        task.cancel()
                elif kind == "conversation.item.truncate":
                    await self._send(
                        conn,
                        {
                            "type": "conversation.item.truncated",
                            "item_id": ev["item_id"],
                            "content_index": 0,
                            "audio_end_ms": ev["audio_end_ms"],
                        },
                    )
        except Exception:
            pass

    async def _respond(self, conn: ServerConnection, active: dict, encode: OutputEncoder) -> None:
        rid, iid = ids.response_id(), ids.item_id()
        active["response_id"], active["item_id"] = rid, iid
        await self._send(conn, {"type": "response.created", "response": {"id": rid, "status": "in_progress"}})
        item = {"id": iid, "type": "message", "role": "assistant", "status": "in_progress", "content": []}
        await self._send(
            conn, {"type": "response.output_item.added", "response_id": rid, "output_index": 0, "item": item}
        )
        await self._send(conn, {"type": "conversation.item.added", "item": item})
        status = "completed"
        try:
            pcm = tone(self.reply_seconds, amplitude=8000 / 32767, hz=440.0)
            # Faster than real time, like a real TTS: the client's queue holds the rest.
            for i in range(0, len(pcm), 2400):
                chunk = pcm[i : i + 2400]
                await self._send(
                    conn,
                    {
                        "type": "response.output_audio_transcript.delta",
                        "response_id": rid,
                        "item_id": iid,
                        "output_index": 0,
                        "content_index": 0,
                        "delta": "la ",
                    },
                )
                await self._send(
                    conn,
                    {
                        "type": "response.output_audio.delta",
                        "response_id": rid,
                        "item_id": iid,
                        "output_index": 0,
                        "content_index": 0,
                        "delta": base64.b64encode(encode(chunk)).decode(),
                    },
                )
                self.item_audio_ms[iid] = (i + len(chunk)) / 24
                await asyncio.sleep(0.01)
            tail = encode(np.zeros(0, np.int16), last=True)  # the resampler's buffered end
            if tail:
                await self._send(
                    conn,
                    {
                        "type": "response.output_audio.delta",
                        "response_id": rid,
                        "item_id": iid,
                        "output_index": 0,
                        "content_index": 0,
                        "delta": base64.b64encode(tail).decode(),
                    },
                )
            await self._send(
                conn,
                {
                    "type": "response.output_audio.done",
                    "response_id": rid,
                    "item_id": iid,
                    "output_index": 0,
                    "content_index": 0,
                },
            )
        except asyncio.CancelledError:
            status = "cancelled"
        await self._send(conn, {"type": "response.done", "response": {"id": rid, "status": status}})

    async def speech_started(self, conn_index: int = -1) -> None:
        await self._send(
            self.connections[conn_index],
            {"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": ids.item_id()},
        )
        session = self.sessions[conn_index]
        td = copy.deepcopy(session["audio"]["input"]["turn_detection"]) or {}
        if td.get("interrupt_response"):
            for task in asyncio.all_tasks():
                if task.get_coro().__name__ == "_respond" and not task.done():
                    task.cancel()

    async def drop(self, conn_index: int = -1) -> None:
        await self.connections[conn_index].close(1011, "boom")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@contextlib.asynccontextmanager
async def fake_server(**kw: Any) -> AsyncIterator[FakeServer]:
    srv = FakeServer(**kw)
    async with serve(srv._handler, "127.0.0.1", srv.port, process_request=srv._auth) as server:
        srv._server = server
        srv.port = server.sockets[0].getsockname()[1]
        yield srv
