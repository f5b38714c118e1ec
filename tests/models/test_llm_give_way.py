"""Two sessions on the one llama.cpp context: a long reply steps aside for another's first words.

The reply that gives way must carry on exactly as if it had not: same text, token for token.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from parley.engine.models.base import ChatMessage, ChatRequest, TextDelta
from parley.engine.models.llm_llama import GIVE_WAY_AFTER_TOKENS

LONG = "Tell me about the history of Paris in about ten sentences."
SHORT = "What is the capital of Italy?"


def _request(key: str, question: str, max_tokens: int) -> ChatRequest:
    return ChatRequest(
        messages=[ChatMessage("system", "You are a helpful assistant."), ChatMessage("user", question)],
        max_tokens=max_tokens,
        cache_key=key,
    )


def _text(llm: Any, request: ChatRequest, stamps: list[float] | None = None) -> str:
    out = []
    for chunk in llm.generate_sync(request):
        if isinstance(chunk, TextDelta):
            out.append(chunk.text)
            if stamps is not None:
                stamps.append(time.perf_counter())
    return "".join(out)


def test_a_long_reply_gives_way_and_carries_on_unchanged(models: Any) -> None:
    llm = models.llm
    # Each reference run starts as the measured one will: from the session's saved prompt state
    # (a prompt evaluated in one batch differs in the last bits from one resumed token by token,
    # enough to change a greedy pick far into a long reply).
    for _ in range(2):
        alone_long = _text(llm, _request("give-way-a", LONG, 120))
        alone_short = _text(llm, _request("give-way-b", SHORT, 24))

    long_stamps: list[float] = []
    results: dict[str, str] = {}
    handoffs = llm._lock.handoffs

    def long_reply() -> None:
        results["long"] = _text(llm, _request("give-way-a", LONG, 120), long_stamps)

    worker = threading.Thread(target=long_reply)
    worker.start()
    while len(long_stamps) < GIVE_WAY_AFTER_TOKENS + 2:  # the long reply is past its first clause
        time.sleep(0.005)
    asked = time.perf_counter()
    short_stamps: list[float] = []
    results["short"] = _text(llm, _request("give-way-b", SHORT, 24), short_stamps)
    worker.join(60)

    assert llm._lock.handoffs > handoffs
    assert results["long"] == alone_long  # token for token, as if it had never stepped aside
    assert results["short"] == alone_short
    # The short reply's first words came while the long one was still being written.
    assert short_stamps[0] < long_stamps[-1]
    print(f"first token of the second session {1000 * (short_stamps[0] - asked):.0f} ms after asking")
