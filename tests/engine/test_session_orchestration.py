"""Session orchestration with fake models: event order, cancellation, truncation, errors.

These pin down the state machine quickly; the same behaviours are proven with
the real models in test_realtime_e2e.py.
"""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest

from parley.engine.config import EngineConfig
from parley.engine.session import RealtimeSession
from tests.support.audio import silence, tone
from tests.support.eventlog import EventLog
from tests.support.fakes import FakeModels

RATE = 24000


def b64(pcm: np.ndarray) -> str:
    return base64.b64encode(pcm.tobytes()).decode()


def make(models: FakeModels | None = None, **config) -> tuple[RealtimeSession, EventLog, FakeModels]:
    models = models or FakeModels()
    cfg = EngineConfig(validate_events=True, **config)
    session = RealtimeSession(models, cfg)  # type: ignore[arg-type]
    log = EventLog()
    session.attach(log)
    session.open()
    return session, log, models


def feed(session: RealtimeSession, pcm: np.ndarray, chunk_ms: int = 20) -> None:
    step = RATE * chunk_ms // 1000
    for i in range(0, len(pcm), step):
        session.receive(json.dumps({"type": "input_audio_buffer.append", "audio": b64(pcm[i : i + step])}))


async def test_session_created_first_and_update_merges() -> None:
    session, log, _ = make()
    assert log.types() == ["session.created"]
    session.receive(
        json.dumps(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "instructions": "Be brief.",
                    "audio": {
                        "output": {"voice": "ash"},
                        "input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 700}},
                    },
                },
            }
        )
    )
    updated = log.of("session.updated")[-1]["session"]
    assert updated["instructions"] == "Be brief."
    assert updated["audio"]["output"]["voice"] == "ash"
    assert updated["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    td = updated["audio"]["input"]["turn_detection"]
    assert td["silence_duration_ms"] == 700 and td["interrupt_response"] is True and td["threshold"] == 0.5
    await session.close()


async def test_voice_turn_event_order() -> None:
    session, log, models = make()
    session.receive(
        json.dumps(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {"input": {"transcription": {"model": "whisper-1"}}},
                },
            }
        )
    )
    feed(session, np.concatenate([silence(0.5), tone(1.0), silence(0.8)]))
    done = await log.wait_for("response.done")
    assert done["response"]["status"] == "completed"
    types = log.types()
    order = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_audio_transcript.delta",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
        "rate_limits.updated",
    ]
    pos = 0
    for kind in order:
        pos = log.index(kind, pos) + 1
    started = log.of("input_audio_buffer.speech_started")[0]
    committed = log.of("input_audio_buffer.committed")[0]
    assert started["item_id"] == committed["item_id"]
    assert 150 <= started["audio_start_ms"] <= 260  # 500 ms onset minus 300 ms padding
    completed = await log.wait_for("conversation.item.input_audio_transcription.completed")
    assert completed["transcript"] == models.stt.text
    transcript = log.of("response.output_audio_transcript.done")[0]["transcript"]
    assert transcript == models.llm.reply
    assert "parley.metrics" in types
    await session.close()


async def test_barge_in_cancels_and_nothing_follows() -> None:
    models = FakeModels()
    models.llm.token_delay = 0.05  # slow enough to interrupt mid-reply
    session, log, _ = make(models)
    feed(session, np.concatenate([silence(0.3), tone(0.8), silence(0.8)]))
    await log.wait_for("response.output_audio.delta")
    feed(session, tone(0.3))
    done = await log.wait_for("response.done")
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    cut = log.index("response.done")
    assert log.index("input_audio_buffer.speech_started", log.index("response.created")) < cut
    await asyncio.sleep(0.3)
    rid = done["response"]["id"]
    late = [
        e
        for e in log.events[cut + 1 :]
        if e.get("response_id") == rid and not e["type"].startswith("parley.")
    ]
    assert late == []
    item = done["response"]["output"][0]
    assert item["status"] == "incomplete"
    await session.close()


async def test_truncate_keeps_heard_words() -> None:
    session, log, models = make()
    session.receive(
        json.dumps(
            {
                "type": "session.update",
                "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
            }
        )
    )
    session.receive(
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
    session.receive(json.dumps({"type": "response.create"}))
    done = await log.wait_for("response.done")
    item_id = done["response"]["output"][0]["id"]
    # Fake TTS: 250 ms per word; the first clause "The capital of France is Paris." is 6 words.
    session.receive(
        json.dumps(
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": 1000,
            }
        )
    )
    truncated = await log.wait_for("conversation.item.truncated")
    assert truncated["audio_end_ms"] == 1000
    session.receive(json.dumps({"type": "conversation.item.retrieve", "item_id": item_id}))
    item = (await log.wait_for("conversation.item.retrieved"))["item"]
    assert item["content"][0]["transcript"] == "The capital of France"  # "is" (1000–1250 ms) unheard
    assert len(base64.b64decode(item["content"][0]["audio"])) == 1000 * 48
    # The next turn's prompt carries only what was heard.
    session.receive(json.dumps({"type": "response.create"}))
    await log.wait_for("response.done", start=log.index("conversation.item.retrieved"))
    assistant = [m for m in models.llm.requests[-1].messages if m.role == "assistant"]
    assert assistant[-1].content == "The capital of France"
    await session.close()


async def test_function_call_flow() -> None:
    session, log, models = make()
    tools = [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        }
    ]
    session.receive(
        json.dumps(
            {
                "type": "session.update",
                "session": {"type": "realtime", "tools": tools, "tool_choice": "required"},
            }
        )
    )
    session.receive(
        json.dumps(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Weather in Paris?"}],
                },
            }
        )
    )
    session.receive(json.dumps({"type": "response.create"}))
    done = await log.wait_for("response.done")
    call = done["response"]["output"][0]
    assert call["type"] == "function_call" and call["status"] == "completed"
    assert json.loads(call["arguments"]) == {"city": "Paris"} and call["name"] == "get_weather"
    args_done = log.of("response.function_call_arguments.done")[0]
    assert args_done["call_id"] == call["call_id"]
    session.receive(
        json.dumps(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "function_call_output",
                    "call_id": call["call_id"],
                    "output": '{"temp_c": 21}',
                },
            }
        )
    )
    session.receive(json.dumps({"type": "response.create", "response": {"tool_choice": "none"}}))
    second = await log.wait_for(
        "response.done", where=lambda e: e["response"]["id"] != done["response"]["id"]
    )
    assert second["response"]["status"] == "completed"
    tool_msgs = [m for m in models.llm.requests[-1].messages if m.role == "tool"]
    assert tool_msgs and tool_msgs[0].content == '{"temp_c": 21}'
    await session.close()


async def test_model_failure_fails_response_not_session() -> None:
    models = FakeModels()
    models.llm.fail = True
    session, log, _ = make(models)
    session.receive(json.dumps({"type": "response.create"}))
    done = await log.wait_for("response.done")
    assert done["response"]["status"] == "failed"
    assert "fake model broke" in done["response"]["status_details"]["error"]["message"]
    models.llm.fail = False
    session.receive(json.dumps({"type": "response.create"}))
    ok = await log.wait_for("response.done", where=lambda e: e["response"]["status"] == "completed")
    assert ok
    await session.close()


async def test_text_mode_and_out_of_band() -> None:
    session, log, _ = make()
    session.receive(
        json.dumps(
            {
                "type": "response.create",
                "response": {
                    "output_modalities": ["text"],
                    "conversation": "none",
                    "metadata": {"topic": "x"},
                },
            }
        )
    )
    done = await log.wait_for("response.done")
    r = done["response"]
    assert r["conversation_id"] is None and r["metadata"] == {"topic": "x"}
    assert r["output"][0]["content"][0]["type"] == "output_text"
    assert "conversation.item.added" not in log.types()
    assert log.of("response.output_text.done")[0]["text"]
    await session.close()


async def test_max_output_tokens_incomplete() -> None:
    session, log, _ = make()
    session.receive(json.dumps({"type": "response.create", "response": {"max_output_tokens": 3}}))
    done = await log.wait_for("response.done")
    assert done["response"]["status"] == "incomplete"
    assert done["response"]["status_details"]["reason"] == "max_output_tokens"
    await session.close()


@pytest.mark.parametrize("codec", ["audio/pcmu", "audio/pcma"])
async def test_g711_in_and_out(codec: str) -> None:
    session, log, _ = make()
    session.receive(
        json.dumps(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {"input": {"format": {"type": codec}}, "output": {"format": {"type": codec}}},
                },
            }
        )
    )
    from parley.protocol.audio_formats import alaw_encode, resample, ulaw_encode

    speech = np.concatenate([silence(0.3), tone(0.8), silence(0.8)])
    g711 = (ulaw_encode if codec == "audio/pcmu" else alaw_encode)(
        resample(speech, RATE, 8000).astype(np.int16)
    )
    for i in range(0, len(g711), 160):
        session.receive(
            json.dumps(
                {"type": "input_audio_buffer.append", "audio": base64.b64encode(g711[i : i + 160]).decode()}
            )
        )
    await log.wait_for("response.done")
    audio = b"".join(base64.b64decode(e["delta"]) for e in log.of("response.output_audio.delta"))
    done = log.of("response.output_audio_transcript.done")[0]
    words = len(done["transcript"].split())
    assert abs(len(audio) / 8 - words * 250) < 5  # 8 bytes per ms; the resampler tail is flushed
    await session.close()


async def test_idle_timeout_triggers_a_response() -> None:
    models = FakeModels()
    models.tts.word_seconds = 0.02  # a short reply, so playback ends quickly
    session, log, _ = make(models)
    session.receive(
        json.dumps(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {"input": {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 5000}}},
                },
            }
        )
    )
    feed(session, np.concatenate([silence(0.3), tone(0.6), silence(0.8)]))
    first = await log.wait_for("response.done")
    t0 = asyncio.get_running_loop().time()
    # The microphone keeps streaming silence, as a real client does.
    for _ in range(70):
        feed(session, silence(0.1))
        await asyncio.sleep(0.1)
        if log.of("input_audio_buffer.timeout_triggered"):
            break
    timeout = await log.wait_for("input_audio_buffer.timeout_triggered", timeout=1)
    waited = asyncio.get_running_loop().time() - t0
    assert 4.9 <= waited <= 6.5
    assert timeout["audio_end_ms"] >= timeout["audio_start_ms"]
    committed = await log.wait_for("input_audio_buffer.committed", start=log.events.index(timeout))
    assert committed["item_id"] == timeout["item_id"]
    second = await log.wait_for(
        "response.done", where=lambda e: e["response"]["id"] != first["response"]["id"]
    )
    assert second["response"]["status"] == "completed"
    await session.close()


async def test_create_response_false_commits_without_answering() -> None:
    session, log, _ = make()
    session.receive(
        json.dumps(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {
                        "input": {
                            "turn_detection": {
                                "type": "server_vad",
                                "create_response": False,
                                "interrupt_response": False,
                            }
                        }
                    },
                },
            }
        )
    )
    feed(session, np.concatenate([silence(0.3), tone(0.6), silence(0.8)]))
    await log.wait_for("input_audio_buffer.committed")
    await asyncio.sleep(0.2)
    assert not log.of("response.created")
    await session.close()


async def test_interrupt_response_false_lets_the_reply_finish() -> None:
    models = FakeModels()
    models.llm.token_delay = 0.03
    session, log, _ = make(models)
    session.receive(
        json.dumps(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {
                        "input": {"turn_detection": {"type": "server_vad", "interrupt_response": False}}
                    },
                },
            }
        )
    )
    feed(session, np.concatenate([silence(0.3), tone(0.6), silence(0.8)]))
    await log.wait_for("response.output_audio.delta")
    feed(session, tone(0.3))
    await log.wait_for("input_audio_buffer.speech_started", start=log.index("response.created"))
    done = await log.wait_for("response.done")
    assert done["response"]["status"] == "completed"
    # The turn spoken over it is answered once it has finished.
    feed(session, silence(0.8))
    second = await log.wait_for(
        "response.done", where=lambda e: e["response"]["id"] != done["response"]["id"]
    )
    assert second["response"]["status"] == "completed"
    await session.close()


async def test_transcription_session_transcribes_without_responding() -> None:
    session, log, models = make()
    session.receive(
        json.dumps(
            {
                "type": "session.update",
                "session": {
                    "type": "transcription",
                    "audio": {"input": {"transcription": {"model": "whisper-1", "language": "en"}}},
                },
            }
        )
    )
    updated = log.of("session.updated")[-1]["session"]
    assert updated["type"] == "transcription" and "output_modalities" not in updated
    feed(session, np.concatenate([silence(0.3), tone(0.6), silence(0.8)]))
    completed = await log.wait_for("conversation.item.input_audio_transcription.completed")
    assert completed["transcript"] == models.stt.text
    await asyncio.sleep(0.1)
    assert not log.of("response.created")
    session.receive(json.dumps({"type": "response.create", "event_id": "r1"}))
    error = await log.wait_for("error")
    assert error["error"]["event_id"] == "r1"
    await session.close()


async def test_prompt_is_prefilled_when_the_session_starts_and_when_it_changes() -> None:
    session, _, models = make()
    await asyncio.sleep(0)
    assert len(models.llm.prefills) == 1 and models.llm.prefills[0].cache_key == session.id
    # A voice change does not touch the prompt: nothing to evaluate again.
    session.receive(
        json.dumps(
            {"type": "session.update", "session": {"type": "realtime", "audio": {"output": {"voice": "ash"}}}}
        )
    )
    await asyncio.sleep(0)
    assert len(models.llm.prefills) == 1
    tool = {
        "type": "function",
        "name": "get_time",
        "description": "The time.",
        "parameters": {"type": "object"},
    }
    session.receive(
        json.dumps(
            {
                "type": "session.update",
                "session": {"type": "realtime", "instructions": "Be brief.", "tools": [tool]},
            }
        )
    )
    await asyncio.sleep(0)
    latest = models.llm.prefills[-1]
    assert len(models.llm.prefills) == 2
    assert latest.messages[0].content.startswith("Be brief.") and [t.name for t in latest.tools] == [
        "get_time"
    ]
    assert not [m for m in latest.messages if m.role == "user"]  # the prompt, before any turn
    await session.close()
    assert models.llm.forgotten == [session.id]
