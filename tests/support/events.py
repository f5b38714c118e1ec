"""Client events the tests send again and again, built in one place."""

from __future__ import annotations

import json


def user_message(text: str) -> str:
    """``conversation.item.create`` of a typed user message, as JSON."""
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    return json.dumps({"type": "conversation.item.create", "item": item})
