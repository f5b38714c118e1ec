"""The scenario supervisor: a text model asked what the realtime agent should say next.

Any OpenAI-compatible ``/chat/completions`` server. By default the realtime
upstream's own: through ``parley serve`` with the embedded engine that is the
engine's ``/v1/chat/completions`` (the same local LLM, reached in-process over
the upstream's ASGI client); with OpenAI upstream, OpenAI with the server's key.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import httpx

from parley.scenarios.schema import Supervisor as SupervisorConfig

log = logging.getLogger(__name__)

DEFAULT_OPENAI_MODEL = "gpt-4.1-mini"


class SupervisorError(Exception):
    pass


@dataclass
class Turn:
    role: str  # "user" or "assistant"
    text: str


@dataclass
class ChatEndpoint:
    """Where chat completions go: a client (base URL set), its auth headers and a model name."""

    http: httpx.AsyncClient
    headers: dict[str, str]
    model: str
    owned: bool = False  # close the client with the supervisor


def endpoint_for(config: SupervisorConfig, upstream_default: ChatEndpoint) -> ChatEndpoint:
    if config.base_url is None:
        model = config.model or upstream_default.model
        return ChatEndpoint(upstream_default.http, upstream_default.headers, model)
    key = os.environ.get(config.api_key_env) if config.api_key_env else None
    return ChatEndpoint(
        httpx.AsyncClient(base_url=config.base_url.rstrip("/"), timeout=config.timeout_s),
        {"Authorization": f"Bearer {key}"} if key else {},
        config.model or "default",
        owned=True,
    )


def transcript(turns: list[Turn], limit: int = 30) -> str:
    lines = [f"{'Caller' if t.role == 'user' else 'Agent'}: {t.text}" for t in turns[-limit:] if t.text]
    return "\n".join(lines) or "(nothing yet)"


class Supervisor:
    def __init__(self, config: SupervisorConfig, endpoint: ChatEndpoint) -> None:
        self.config = config
        self.endpoint = endpoint

    async def ask(self, turns: list[Turn], question: str = "") -> str:
        prompt = f"The conversation so far:\n{transcript(turns)}\n\n"
        if question:
            prompt += f"The agent asks you: {question}\n\n"
        prompt += "What should the agent say next? Reply with only those words."
        body = {
            "model": self.endpoint.model,
            "messages": [
                {"role": "system", "content": self.config.instructions},
                {"role": "user", "content": prompt},
            ],
            "max_tokens": self.config.max_tokens,
        }
        try:
            response = await self.endpoint.http.post(
                "/chat/completions", json=body, headers=self.endpoint.headers, timeout=self.config.timeout_s
            )
        except httpx.HTTPError as exc:
            raise SupervisorError(f"the supervisor could not be reached: {type(exc).__name__}") from None
        if response.status_code >= 400:
            raise SupervisorError(f"the supervisor answered HTTP {response.status_code}")
        try:
            answer = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise SupervisorError("the supervisor's answer could not be read") from None
        if not isinstance(answer, str) or not answer.strip():
            raise SupervisorError("the supervisor gave no answer")
        return answer.strip()

    async def close(self) -> None:
        if self.endpoint.owned:
            await self.endpoint.http.aclose()
