"""Bad input over a real WebSocket: each case gets a precise error event and the session goes on.

Fake models keep this fast; the table runs against one live session, and the
final turn proves nothing was lost along the way.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import numpy as np
import websockets

from parley.engine.config import EngineConfig
from parley.host.app import create_engine_app
from parley.host.runtime import EngineRuntime
from parley.protocol.validation import validate_server_event
from tests.support.fakes import FakeModels
from tests.support.servers import serve_app

MAX_MESSAGE = 256 * 1024

# (name, frame to send, expected error code, expected param or None)
CASES: list[tuple[str, str | bytes, str, str | None]] = [
    ("invalid json", "{not json", "invalid_event", None),
    ("not an object", "[1, 2]", "invalid_event", None),
    ("missing type", json.dumps({"event_id": "PLACEHOLDER"}), "missing_required_parameter", "type"),
    ("unknown type", json.dumps({"type": "conversation.item.explode"}), "invalid_event", "type"),
    (
        "missing field",
        json.dumps({"type": "conversation.item.truncate", "item_id": "x", "content_index": 0}),
        "missing_required_parameter",
        "audio_end_ms",
    ),
    (
        "wrong-typed field",
        json.dumps({"type": "input_audio_buffer.append", "audio": 12}),
        "invalid_type",
        "audio",
    ),
    (
        "non-base64 audio",
        json.dumps({"type": "input_audio_buffer.append", "audio": "@@not base64@@"}),
        "invalid_value",
        "audio",
    ),
    (
        "oversized message",
        json.dumps({"type": "input_audio_buffer.append", "audio": "A" * (MAX_MESSAGE + 10)}),
        "message_too_large",
        None,
    ),
    ("commit under 100 ms", "COMMIT_SHORT", "input_audio_buffer_commit_empty", None),
    (
        "retrieve unknown item",
        json.dumps({"type": "conversation.item.retrieve", "item_id": "item_nope"}),
        "item_not_found",
        "item_id",
    ),
    (
        "delete unknown item",
        json.dumps({"type": "conversation.item.delete", "item_id": "item_nope"}),
        "item_not_found",
        "item_id",
    ),
    (
        "truncate unknown item",
        json.dumps(
            {
                "type": "conversation.item.truncate",
                "item_id": "item_nope",
                "content_index": 0,
                "audio_end_ms": 10,
            }
        ),
        "item_not_found",
        "item_id",
    ),
    (
        "unknown previous_item_id",
        json.dumps(
            {
                "type": "conversation.item.create",
                "previous_item_id": "item_nope",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "hi"}],
                },
            }
        ),
        "previous_item_not_found",
        "previous_item_id",
    ),
    (
        "bad item type",
        json.dumps({"type": "conversation.item.create", "item": {"type": "banana"}}),
        "invalid_event",
        "item.type",
    ),
    (
        "assistant audio from client",
        json.dumps(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_audio", "audio": "AAAA"}],
                },
            }
        ),
        "invalid_value",
        "item.content[0].audio",
    ),
    (
        "session.update without type",
        json.dumps({"type": "session.update", "session": {"instructions": "x"}}),
        "missing_required_parameter",
        "session.type",
    ),
    (
        "speed out of range",
        json.dumps(
            {"type": "session.update", "session": {"type": "realtime", "audio": {"output": {"speed": 3}}}}
        ),
        "invalid_value",
        "session.audio.output.speed",
    ),
    (
        "both modalities",
        json.dumps(
            {
                "type": "session.update",
                "session": {"type": "realtime", "output_modalities": ["audio", "text"]},
            }
        ),
        "invalid_value",
        "session.output_modalities",
    ),
    (
        "bad audio format",
        json.dumps(
            {
                "type": "session.update",
                "session": {"type": "realtime", "audio": {"input": {"format": {"type": "audio/flac"}}}},
            }
        ),
        "invalid_value",
        "session.audio.input.format.type",
    ),
    (
        "bad turn detection",
        json.dumps(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 7}}},
                },
            }
        ),
        "invalid_value",
        "session.audio.input.turn_detection.threshold",
    ),
    (
        "tool choice of unknown tool",
        json.dumps(
            {"type": "response.create", "response": {"tool_choice": {"type": "function", "name": "nope"}}}
        ),
        "invalid_value",
        "response.tool_choice",
    ),
    (
        "cancel with nothing active",
        json.dumps({"type": "response.cancel"}),
        "response_cancel_not_active",
        None,
    ),
    (
        "output buffer clear over WebSocket",
        json.dumps({"type": "output_audio_buffer.clear"}),
        "invalid_event",
        None,
    ),
    (
        "mcp connector (OpenAI-hosted)",
        json.dumps(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "tools": [{"type": "mcp", "server_label": "x", "connector_id": "connector_gmail"}],
                },
            }
        ),
        "unsupported_tool",
        "session.tools[0].connector_id",
    ),
]


async def _next_error(ws: Any, timeout: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            event = json.loads(await ws.recv())
            validate_server_event(event)
            if event["type"] == "error":
                return event


async def test_bad_input_table() -> None:
    rt = EngineRuntime(EngineConfig(validate_events=True, max_message_bytes=MAX_MESSAGE), models=FakeModels())  # type: ignore[arg-type]
    async with serve_app(create_engine_app(rt), ws_max_size=4 * MAX_MESSAGE) as srv:
        async with websockets.connect(f"{srv.ws}/v1/realtime", max_size=None) as ws:
            failures = []
            for i, (name, frame, code, param) in enumerate(CASES):
                event_id = f"evt_case_{i}"
                if frame == "COMMIT_SHORT":
                    pcm = np.zeros(24 * 50, dtype=np.int16)  # 50 ms
                    await ws.send(
                        json.dumps(
                            {
                                "type": "session.update",
                                "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
                            }
                        )
                    )
                    await ws.send(
                        json.dumps(
                            {
                                "type": "input_audio_buffer.append",
                                "audio": base64.b64encode(pcm.tobytes()).decode(),
                            }
                        )
                    )
                    frame = json.dumps({"type": "input_audio_buffer.commit", "event_id": event_id})
                elif isinstance(frame, str) and frame.startswith('{"'):
                    payload = json.loads(frame)
                    if isinstance(payload, dict):
                        payload["event_id"] = event_id
                        frame = json.dumps(payload)
                await ws.send(frame)
                error = (await _next_error(ws))["error"]
                if (
                    error["code"] != code
                    or (param is not None and error["param"] != param)
                    or not error["message"]
                ):
                    failures.append((name, error))
                elif '"event_id"' in str(frame) and error["event_id"] != event_id:
                    failures.append((name, "event_id not echoed", error))
            assert failures == []

            # A response in flight refuses a second one, then everything still works.
            await ws.send(
                json.dumps(
                    {
                        "type": "conversation.item.create",
                        "item": {
                            "type": "message",
                            "role": "user",
                            "content": [{"type": "input_text", "text": "Capital of France?"}],
                        },
                    }
                )
            )
            await ws.send(json.dumps({"type": "response.create"}))
            await ws.send(json.dumps({"type": "response.create", "event_id": "second"}))
            error = await _next_error(ws)
            assert error["error"]["code"] == "conversation_already_has_active_response"
            assert error["error"]["event_id"] == "second"
            async with asyncio.timeout(5):
                while True:
                    event = json.loads(await ws.recv())
                    if event["type"] == "response.done":
                        assert event["response"]["status"] == "completed"
                        break
            # Truncating beyond the audio is refused with the item left intact.
            item_id = event["response"]["output"][0]["id"]
            await ws.send(
                json.dumps(
                    {
                        "type": "conversation.item.truncate",
                        "item_id": item_id,
                        "content_index": 0,
                        "audio_end_ms": 999_999,
                    }
                )
            )
            error = await _next_error(ws)
            assert error["error"]["code"] == "invalid_value" and error["error"]["param"] == "audio_end_ms"
            assert "shorter than" in error["error"]["message"]


async def test_unknown_fields_of_a_created_item_are_not_echoed() -> None:
    """Found by ``parley bench fuzz``: a content part with a stray key crashed the echo."""
    from parley.protocol.client_events import parse_client_event

    event = parse_client_event(
        json.dumps(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "junk": 1,
                    "content": [{"type": "input_text", "text": "Hi", "tex]t": "x"}],
                },
            }
        )
    )
    assert event["item"] == {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "Hi"}],
    }
