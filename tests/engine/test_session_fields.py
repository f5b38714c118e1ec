"""Post-GA session fields with fake models: accepted, echoed, validated, and passed on.

``reasoning`` and ``parallel_tool_calls`` (session and response) reach the LLM request;
transcription ``languages`` asks the STT to detect among them and the detected language is
reported on ``completed``; ``keywords`` bias Whisper through its prompt; ``delay`` and
``noise_reduction.strength`` are echoed. Every event is validated strictly (EventLog).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from tests.engine.test_session_orchestration import feed, make
from tests.support.audio import silence, tone
from tests.support.fakes import FakeModels


def update(session: Any, body: dict[str, Any]) -> None:
    session.receive(json.dumps({"type": "session.update", "session": {"type": "realtime", **body}}))


async def test_reasoning_and_parallel_tool_calls_are_echoed_and_reach_the_llm() -> None:
    session, log, models = make()
    assert "reasoning" not in log.of("session.created")[0]["session"]  # absent until set
    update(session, {"reasoning": {"effort": "low"}, "parallel_tool_calls": False})
    echoed = (await log.wait_for("session.updated"))["session"]
    assert echoed["reasoning"] == {"effort": "low"} and echoed["parallel_tool_calls"] is False
    session.receive(json.dumps({"type": "response.create"}))
    await log.wait_for("response.done")
    request = models.llm.requests[-1]
    assert (request.reasoning_effort, request.parallel_tool_calls) == ("low", False)
    # A response overrides the session for itself only.
    session.receive(
        json.dumps(
            {
                "type": "response.create",
                "response": {"reasoning": {"effort": "high"}, "parallel_tool_calls": True},
            }
        )
    )
    await log.wait_for("response.done", start=log.index("response.done") + 1)
    request = models.llm.requests[-1]
    assert (request.reasoning_effort, request.parallel_tool_calls) == ("high", True)
    await session.close()


async def test_bad_values_are_errors_and_the_session_goes_on() -> None:
    session, log, _ = make()
    for body, param in (
        ({"reasoning": {"effort": "extreme"}}, "session.reasoning.effort"),
        ({"parallel_tool_calls": "yes"}, "session.parallel_tool_calls"),
        (
            {"audio": {"input": {"transcription": {"model": "whisper-1", "delay": "soon"}}}},
            "session.audio.input.transcription.delay",
        ),
        (
            {"audio": {"input": {"noise_reduction": {"type": "near_field", "strength": 3}}}},
            "session.audio.input.noise_reduction.strength",
        ),
    ):
        seen = len(log.events)
        update(session, body)
        error = await log.wait_for("error", start=seen)
        assert error["error"]["param"] == param, error
    update(session, {"instructions": "Still here."})
    assert (await log.wait_for("session.updated"))["session"]["instructions"] == "Still here."
    await session.close()


async def test_languages_detected_and_reported_keywords_in_the_prompt() -> None:
    session, log, models = make(FakeModels())
    transcription = {
        "model": "gpt-transcribe",
        "languages": ["fr", "de"],
        "keywords": ["Parley", "Silero"],
        "prompt": "A voice assistant.",
        "delay": "low",
    }
    update(
        session,
        {
            "audio": {
                "input": {
                    "transcription": transcription,
                    "noise_reduction": {"type": "far_field", "strength": 0.5},
                    "turn_detection": None,
                }
            }
        },
    )
    echoed = (await log.wait_for("session.updated"))["session"]["audio"]["input"]
    assert echoed["transcription"] == transcription
    assert echoed["noise_reduction"] == {"type": "far_field", "strength": 0.5}
    feed(session, np.concatenate([tone(0.6), silence(0.2)]))
    session.receive(json.dumps({"type": "input_audio_buffer.commit"}))
    completed = await log.wait_for("conversation.item.input_audio_transcription.completed")
    assert completed["languages"] == [{"code": "fr"}]  # the fake "detects" the first allowed one
    assert models.stt.last_options == {
        "language": None,
        "prompt": "A voice assistant. Parley, Silero",
        "languages": ["fr", "de"],
    }
    await session.close()


async def test_no_languages_field_means_no_languages_on_completed() -> None:
    session, log, models = make()
    update(session, {"audio": {"input": {"transcription": {"model": "whisper-1"}, "turn_detection": None}}})
    await log.wait_for("session.updated")
    feed(session, np.concatenate([tone(0.6), silence(0.2)]))
    session.receive(json.dumps({"type": "input_audio_buffer.commit"}))
    completed = await log.wait_for("conversation.item.input_audio_transcription.completed")
    assert "languages" not in completed
    assert models.stt.last_options["language"] == "en" and models.stt.last_options["prompt"] is None
    await session.close()


def _db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-12))


async def test_noise_reduction_suppresses_the_input_before_vad_and_whisper() -> None:
    rng = np.random.default_rng(1)
    noise = (rng.standard_normal(24000 * 2) * 1500).astype(np.int16)  # 2 s of white noise
    heard = {}
    for kind in (None, "near_field", "far_field"):
        session, log, models = make()
        nr = {"type": kind} if kind else None
        update(session, {"audio": {"input": {"noise_reduction": nr, "turn_detection": None}}})
        await log.wait_for("session.updated")
        feed(session, noise)
        session.receive(json.dumps({"type": "input_audio_buffer.commit"}))
        session.receive(json.dumps({"type": "response.create"}))
        await log.wait_for("response.done")
        assert models.stt.last_audio is not None
        heard[kind] = _db(models.stt.last_audio[16000:])  # after the suppressor has adapted (1 s)
        await session.close()
    assert heard["near_field"] < heard[None] - 10, heard
    assert heard["far_field"] < heard[None] - 10, heard


def _say(session: Any, role: str, text: str) -> None:
    kind = "input_text" if role == "user" else "output_text"
    session.receive(
        json.dumps(
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": role, "content": [{"type": kind, "text": text}]},
            }
        )
    )


def _history_tokens(request: Any) -> int:
    from parley.engine.prompt import estimate_tokens

    return sum(estimate_tokens(m) for m in request.messages if m.role != "system")


async def test_truncation_rules_decide_what_the_model_sees() -> None:
    session, log, models = make()
    for i in range(40):  # ~40 × 55 tokens: far over a 600-token limit
        _say(session, "user" if i % 2 == 0 else "assistant", f"Message {i}: " + "words " * 33)
    _say(session, "user", "The latest question?")
    # Fits: nothing is dropped.
    update(session, {"truncation": "auto"})
    session.receive(json.dumps({"type": "response.create"}))
    await log.wait_for("response.done")
    assert len(models.llm.requests[-1].messages) == 1 + 41
    # post_instructions caps the input; retention_ratio cuts below it, newest kept.
    truncation = {
        "type": "retention_ratio",
        "retention_ratio": 0.5,
        "token_limits": {"post_instructions": 600},
    }
    update(session, {"truncation": truncation})
    assert (await log.wait_for("session.updated", start=log.index("response.done")))["session"][
        "truncation"
    ] == truncation
    seen = len(log.events)
    session.receive(json.dumps({"type": "response.create"}))
    await log.wait_for("response.done", start=seen)
    request = models.llm.requests[-1]
    assert _history_tokens(request) <= 300
    assert "The latest question?" in [m.content for m in request.messages[-3:]]  # the newest are kept
    assert len(request.messages) > 3
    # A small context ("auto"): the oldest go until the history fits.
    models.llm.n_ctx = 1024  # type: ignore[attr-defined]
    update(session, {"truncation": "auto"})
    seen = len(log.events)
    session.receive(json.dumps({"type": "response.create"}))
    await log.wait_for("response.done", start=seen)
    assert 300 < _history_tokens(models.llm.requests[-1]) <= 1024 - 256
    # "disabled": the response fails with a clear error and the session goes on.
    update(session, {"truncation": "disabled"})
    seen = len(log.events)
    session.receive(json.dumps({"type": "response.create"}))
    done = await log.wait_for("response.done", start=seen)
    assert done["response"]["status"] == "failed"
    assert done["response"]["status_details"]["error"]["code"] == "context_length_exceeded"
    await session.close()


async def test_bad_truncation_values_are_errors() -> None:
    session, log, _ = make()
    for value, param in (
        ("sometimes", "session.truncation"),
        ({"type": "retention_ratio"}, "session.truncation.retention_ratio"),
        ({"type": "retention_ratio", "retention_ratio": 1.5}, "session.truncation.retention_ratio"),
        (
            {"type": "retention_ratio", "retention_ratio": 0.5, "token_limits": {"post_instructions": -1}},
            "session.truncation.token_limits.post_instructions",
        ),
    ):
        seen = len(log.events)
        update(session, {"truncation": value})
        assert (await log.wait_for("error", start=seen))["error"]["param"] == param
    await session.close()
