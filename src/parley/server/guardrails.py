"""Output guardrails: checks on the assistant's transcript as it streams.

Two built-ins: a word list (checked on every delta, synchronously) and an
OpenAI-compatible ``/moderations`` call (checked at each sentence end, one
request in flight per reply). What to do on a violation (cancel, truncate,
correct) is the scenario session's job; this module only decides.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

import httpx

from parley.scenarios.schema import Guardrails, Moderation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Violation:
    rule: str  # "words" or "moderation"
    detail: str  # the word matched, or the flagged categories


class WordList:
    def __init__(self, words: list[str]) -> None:
        terms = [w.strip() for w in words if w.strip()]
        # Whole words, any case, any whitespace between the words of a phrase.
        parts = [r"\s+".join(re.escape(p) for p in t.split()) for t in sorted(terms, key=len, reverse=True)]
        self.pattern = re.compile(r"(?<![\w])(" + "|".join(parts) + r")(?![\w])", re.I) if parts else None

    def check(self, text: str) -> Violation | None:
        if self.pattern is None:
            return None
        found = self.pattern.search(text)
        return Violation("words", found.group(1)) if found else None


class ModerationCheck:
    """``POST {base_url}/moderations`` with ``{"model", "input"}``; flagged → a violation.

    A moderation server that fails or times out lets the text pass (logged): a
    guardrail outage must not silence the agent.
    """

    def __init__(self, config: Moderation, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        key = os.environ.get(config.api_key_env) if config.api_key_env else None
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = http or httpx.AsyncClient(timeout=config.timeout_s)
        self.url = config.base_url.rstrip("/") + "/moderations"

    async def check(self, text: str) -> Violation | None:
        try:
            response = await self.http.post(
                self.url,
                json={"model": self.config.model, "input": text},
                headers=self.headers,
                timeout=self.config.timeout_s,
            )
            response.raise_for_status()
            results = response.json().get("results") or []
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            log.warning("moderation check at %s failed: %s", self.url, exc)
            return None
        for result in results:
            if isinstance(result, dict) and result.get("flagged"):
                categories = result.get("categories") or {}
                flagged = (
                    sorted(k for k, v in categories.items() if v) if isinstance(categories, dict) else []
                )
                return Violation("moderation", ", ".join(flagged) or "flagged")
        return None

    async def close(self) -> None:
        await self.http.aclose()


class Guard:
    """The checks a scenario asks for."""

    def __init__(self, config: Guardrails, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self.words = WordList(config.words)
        self.moderation = ModerationCheck(config.moderation, http) if config.moderation else None

    def quick(self, text: str) -> Violation | None:
        return self.words.check(text)

    async def slow(self, text: str) -> Violation | None:
        return await self.moderation.check(text) if self.moderation else None

    def correction(self, violation: Violation) -> str:
        rule = (
            f"it said '{violation.detail}'"
            if violation.rule == "words"
            else f"moderation: {violation.detail}"
        )
        return self.config.correction.replace("{rule}", rule)

    async def close(self) -> None:
        if self.moderation:
            await self.moderation.close()


SENTENCE_END = re.compile(r"[.!?…]\s*$")
