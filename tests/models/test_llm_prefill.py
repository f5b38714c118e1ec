"""Prompt prefill and per-session prompt state on the real default LLM (llama.cpp)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from parley.engine.models.base import ChatMessage, ChatRequest, TextDelta, ToolSpec

pytestmark = [pytest.mark.models]

LONG_INSTRUCTIONS = (
    "You are Parley, a friendly voice assistant in a live spoken conversation. Keep replies short: one "
    "to three sentences. Use plain spoken words, no lists or markdown. Answer the question first. "
) * 4
TOOLS = [
    ToolSpec(
        "get_time",
        "Current date and time in a time zone.",
        {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]},
    ),
    ToolSpec(
        "add_note",
        "Save a short note.",
        {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    ),
]


def _request(key: str, instructions: str, question: str | None = None) -> ChatRequest:
    messages = [ChatMessage("system", instructions)]
    if question:
        messages.append(ChatMessage("user", question))
    return ChatRequest(messages=messages, tools=TOOLS, max_tokens=12, cache_key=key)


def _first_token_s(llm: Any, request: ChatRequest) -> float:
    started = time.perf_counter()
    for chunk in llm.generate_sync(request):
        if isinstance(chunk, TextDelta) and chunk.text.strip():
            return time.perf_counter() - started
    return time.perf_counter() - started


def test_prefill_evaluates_the_prompt_before_the_turn(models: Any) -> None:
    llm = models.llm
    ready = llm.prefill_sync(_request("sess_a", LONG_INSTRUCTIONS))
    assert ready > 200  # instructions + tool schemas: hundreds of tokens evaluated ahead
    cached = llm._states.cached_tokens()
    turn = _request("sess_a", LONG_INSTRUCTIONS, "What is the capital of France?")
    turn_tokens = llm._tokenize(llm._plan(turn).prompt)
    # The turn's prompt starts with what was prefilled: only the user's words remain to evaluate.
    from parley.engine.models.llama_prompt_cache import common_prefix

    assert common_prefix(cached, turn_tokens) >= ready - 8
    assert len(turn_tokens) - common_prefix(cached, turn_tokens) < 40


def test_sessions_with_different_prompts_do_not_evict_each_other(models: Any) -> None:
    llm = models.llm
    other = "You are a pirate who answers every question about the sea. " * 8
    llm.prefill_sync(_request("sess_b", LONG_INSTRUCTIONS))
    llm.prefill_sync(_request("sess_c", other))  # the live cache now holds sess_c's prompt
    restores = llm._states.restores
    warm = _first_token_s(llm, _request("sess_b", LONG_INSTRUCTIONS, "Who wrote Hamlet?"))
    assert llm._states.restores == restores + 1  # sess_b's prompt came back from its saved state
    llm.prefill_sync(_request("sess_c", other))
    # A prompt no session has had (it differs in its second word): the whole system block is
    # evaluated, measurably slower.
    cold = _first_token_s(
        llm, _request("sess_new", LONG_INSTRUCTIONS.replace("Parley", "Polly"), "Who wrote Hamlet?")
    )
    assert warm < cold, (warm, cold)
    for key in ("sess_b", "sess_c", "sess_new"):
        llm.forget(key)


def test_a_new_session_starts_from_the_prompt_an_ended_session_shared(models: Any) -> None:
    """The page's sessions share their system block: the next one does not evaluate it again."""
    llm = models.llm
    other = "You are a pirate who answers every question about the sea. " * 8
    page = "Echo here: a calm museum guide who answers in one or two short spoken sentences. " * 5
    before = llm.prefilled_tokens
    llm.prefill_sync(_request("page_1", page))
    whole = llm.prefilled_tokens - before
    assert whole > 200
    llm.forget("page_1")  # the session ended; its state stays as a donor
    llm.prefill_sync(_request("pirate", other))  # the live cache now holds another prompt
    restores, before = llm._states.restores, llm.prefilled_tokens
    llm.prefill_sync(_request("page_2", page))
    assert llm._states.restores == restores + 1
    assert llm.prefilled_tokens - before < 10, (llm.prefilled_tokens - before, whole)
    for key in ("page_2", "pirate"):
        llm.forget(key)


def test_a_newer_prefill_of_the_same_session_supersedes_the_older(models: Any) -> None:
    """session.update right after connecting: the first prompt's prefill must not also run."""
    import threading

    llm = models.llm
    llm.forget("sess_d")
    done: dict[str, int] = {}

    def prefill(label: str, instructions: str) -> threading.Thread:
        worker = threading.Thread(
            target=lambda: done.__setitem__(label, llm.prefill_sync(_request("sess_d", instructions)))
        )
        worker.start()
        return worker

    with llm._lock:  # the model is busy: both prefills queue behind it, the older one first
        older = prefill("older", LONG_INSTRUCTIONS)
        while llm._prefill_generation.get("sess_d") != 1:
            time.sleep(0.01)
        newer = prefill("newer", "Answer like a pirate. " * 10)
        while llm._prefill_generation.get("sess_d") != 2:
            time.sleep(0.01)
    older.join(60)
    newer.join(60)
    assert done == {"older": 0, "newer": done["newer"]} and done["newer"] > 50
    llm.forget("sess_d")
