"""``POST /v1/chat/completions``: the engine's LLM as an OpenAI-compatible chat server (text only).

What a scenario's supervisor asks (see ``parley.server.scenario``): any client that speaks
chat completions can reach the same local model the voice sessions use, so the supervisor
needs no second model or server. Non-streaming, no tools: enough for a text answer.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse

from parley.engine.models.base import ChatMessage, ChatRequest, Finish, TextDelta, ToolChoice
from parley.httpapi import bearer_token, openai_error
from parley.protocol import ids

MAX_MESSAGES = 200
MAX_CHARS = 64 * 1024
MAX_TOKENS = 1024
ROLES = {"system", "user", "assistant", "developer"}


class ChatInputError(ValueError):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def _text(content: Any, where: str) -> str:
    """A message's content: a string, or a list of ``{"type": "text", "text": …}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if not (
                isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
            ):
                raise ChatInputError(
                    f"Invalid '{where}[{i}]': only text parts are supported.", f"{where}[{i}]"
                )
            parts.append(part["text"])
        return "\n".join(parts)
    raise ChatInputError(f"Invalid '{where}': expected a string or a list of text parts.", where)


def parse_request(body: Any) -> ChatRequest:
    if not isinstance(body, dict):
        raise ChatInputError("The request body must be a JSON object.")
    if body.get("stream"):
        raise ChatInputError("Streaming is not supported here; send stream: false.", "stream")
    if body.get("tools"):
        raise ChatInputError("Tools are not supported on this endpoint.", "tools")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or len(messages) > MAX_MESSAGES:
        raise ChatInputError(f"'messages' must be a list of 1 to {MAX_MESSAGES} messages.", "messages")
    out: list[ChatMessage] = []
    size = 0
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise ChatInputError(
                f"Invalid 'messages[{i}].role': expected one of {', '.join(sorted(ROLES))}.",
                f"messages[{i}].role",
            )
        text = _text(m.get("content", ""), f"messages[{i}].content")
        size += len(text)
        role: Literal["system", "user", "assistant"] = "system" if m["role"] == "developer" else m["role"]
        out.append(ChatMessage(role, text))
    if size > MAX_CHARS:
        raise ChatInputError(f"The messages hold {size} characters; the limit is {MAX_CHARS}.", "messages")
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ChatInputError("'max_tokens' must be a positive integer.", "max_tokens")
    temperature = body.get("temperature")
    if temperature is not None and not isinstance(temperature, int | float):
        raise ChatInputError("'temperature' must be a number.", "temperature")
    return ChatRequest(
        out,
        tool_choice=ToolChoice("none"),
        max_tokens=min(limit or 256, MAX_TOKENS),
        temperature=temperature,
    )


async def complete(llm: Any, request: ChatRequest, model: str) -> dict[str, Any]:
    """Run the request to the end; the chat-completion object."""
    text: list[str] = []
    finish = Finish("stop")
    async for chunk in llm.stream(request):
        if isinstance(chunk, TextDelta):
            text.append(chunk.text)
        elif isinstance(chunk, Finish):
            finish = chunk
    return {
        "id": f"chatcmpl-{ids.event_id().removeprefix('event_')}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(text).strip()},
                "finish_reason": "length" if finish.reason == "length" else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": finish.input_tokens,
            "completion_tokens": finish.output_tokens,
            "total_tokens": finish.input_tokens + finish.output_tokens,
        },
    }


async def chat_completions(request: Request, runtime: Any) -> JSONResponse:
    client = request.client.host if request.client else None
    auth = runtime.auth.check(bearer_token(request.headers.get("authorization")), client)
    if not auth.ok:
        return JSONResponse(openai_error(auth.message, "invalid_request_error", auth.code), auth.status)
    if auth.secret is not None:
        return JSONResponse(
            openai_error(
                "An ephemeral key opens realtime sessions only.", "invalid_request_error", "forbidden"
            ),
            403,
        )
    if runtime.models is None:
        return JSONResponse(openai_error("The models are still loading.", "server_error", "loading"), 503)
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse(
            openai_error("The request body is not valid JSON.", "invalid_request_error", "invalid_json"), 400
        )
    try:
        chat = parse_request(body)
    except ChatInputError as err:
        return JSONResponse(openai_error(str(err), "invalid_request_error", "invalid_value", err.param), 400)
    model = str(body.get("model") or runtime.models.llm.name)
    try:
        return JSONResponse(await complete(runtime.models.llm, chat, model))
    except Exception as exc:  # a model failure is this request's, never the server's
        return JSONResponse(openai_error(f"The model failed: {exc}", "server_error", "model_error"), 500)
