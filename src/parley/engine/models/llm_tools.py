"""Tool-call helpers shared by the LLM backends."""

from __future__ import annotations

import copy
import json
import secrets
from typing import Any

from parley.engine.models.base import ToolSpec

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"

# Caps added to schemas that have none, so a constrained small model cannot
# loop forever inside a string or array and still always closes valid JSON.
MAX_STRING_CHARS = 80
MAX_ARRAY_ITEMS = 8


def new_call_id() -> str:
    return "call_" + secrets.token_urlsafe(18).replace("-", "").replace("_", "")[:22]


def bounded_schema(schema: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of ``schema`` with length caps on strings and arrays that have none."""
    schema = copy.deepcopy(schema) if schema else {"type": "object", "properties": {}}
    if schema.get("type") is None and "properties" in schema:
        schema["type"] = "object"

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            kind = node.get("type")
            if kind == "string" and "maxLength" not in node and "enum" not in node and "pattern" not in node:
                node["maxLength"] = MAX_STRING_CHARS
            if kind == "array" and "maxItems" not in node:
                node["maxItems"] = MAX_ARRAY_ITEMS
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def describe_tools(tools: list[ToolSpec]) -> str:
    """System-prompt text telling the model which tools exist and how to call one."""
    lines = [
        "You can call these tools. To call one, reply with only",
        f'{TOOL_CALL_OPEN}{{"name": "<tool name>", "arguments": {{...}}}}{TOOL_CALL_CLOSE}',
        "Tools:",
    ]
    for tool in tools:
        params = json.dumps(tool.parameters or {}, separators=(",", ":"))
        lines.append(f"- {tool.name}: {tool.description or 'no description'} Parameters: {params}")
    return "\n".join(lines)
