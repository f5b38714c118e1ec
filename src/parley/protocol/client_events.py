"""Parsing client events: raw frame → validated dict, or a precise ProtocolError.

Validation uses openai-python's own client event types (so "wrong-typed
field" means exactly what the official SDK would reject). Unknown fields are
accepted and ignored, as the GA server does for post-GA additions.
"""

from __future__ import annotations

import json
from typing import Any

import pydantic
from openai.types.realtime import (
    RealtimeConversationItemAssistantMessage,
    RealtimeConversationItemFunctionCall,
    RealtimeConversationItemFunctionCallOutput,
    RealtimeConversationItemSystemMessage,
    RealtimeConversationItemUserMessage,
)

from parley.protocol.errors import ProtocolError, invalid_event
from parley.protocol.validation import client_event_classes

_ITEM_CLASSES: dict[tuple[str, str | None], type[pydantic.BaseModel]] = {
    ("message", "user"): RealtimeConversationItemUserMessage,
    ("message", "assistant"): RealtimeConversationItemAssistantMessage,
    ("message", "system"): RealtimeConversationItemSystemMessage,
    ("function_call", None): RealtimeConversationItemFunctionCall,
    ("function_call_output", None): RealtimeConversationItemFunctionCallOutput,
}


_TYPE_ERRORS = ("_type", "_parsing")

# Discriminated unions checked before pydantic, whose errors for a wrong
# discriminator would list every branch.
_ITEM_TYPES = (
    "message",
    "function_call",
    "function_call_output",
    "mcp_approval_response",
    "mcp_list_tools",
    "mcp_call",
    "mcp_approval_request",
)
_ROLES = ("user", "assistant", "system")


def _param(loc: tuple[Any, ...], event: dict[str, Any], missing: bool) -> str:
    """Dotted path of an error, keeping only the parts that name real fields.

    pydantic puts union-branch labels (``int``, ``literal['inf']``, class names)
    into locations; walking the actual payload drops them.
    """
    out = ""
    node: Any = event
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            out += f"[{part}]"
            node = node[part]
        elif isinstance(part, str) and isinstance(node, dict) and (part in node or (missing and last)):
            out += ("." if out else "") + part
            node = node.get(part)
    return out


def _from_validation_error(kind: str, event: dict[str, Any], exc: pydantic.ValidationError) -> ProtocolError:
    errors = exc.errors(include_url=False)
    # Prefer a "missing" error: it is the most actionable.
    missing = [e for e in errors if e["type"] == "missing"]
    err = (missing or errors)[0]
    param = _param(err["loc"], event, bool(missing))
    if err["type"] == "missing":
        return ProtocolError("missing_required_parameter", f"Missing required parameter: '{param}'.", param)
    got = err.get("input")
    shown = (
        json.dumps(got)[:80] if isinstance(got, str | int | float | bool | type(None)) else type(got).__name__
    )
    code = "invalid_type" if err["type"].endswith(_TYPE_ERRORS) else "invalid_value"
    return ProtocolError(code, f"Invalid value for '{param}' in {kind}: {err['msg']} (got {shown}).", param)


def _check_item_discriminators(item: Any, param: str) -> None:
    if not isinstance(item, dict):
        raise ProtocolError("invalid_type", f"Invalid type for '{param}': expected an object.", param)
    kind = item.get("type")
    if kind is None:
        raise ProtocolError(
            "missing_required_parameter", f"Missing required parameter: '{param}.type'.", f"{param}.type"
        )
    if kind not in _ITEM_TYPES:
        raise invalid_event(
            f"Invalid value: '{kind}'. Supported values are: {', '.join(_ITEM_TYPES)}.", f"{param}.type"
        )
    if kind == "message" and item.get("role") not in _ROLES:
        raise invalid_event(
            f"Invalid value for '{param}.role': {item.get('role')!r}. Supported values are: "
            f"{', '.join(_ROLES)}.",
            f"{param}.role",
        )
    cls = _ITEM_CLASSES.get((kind, item.get("role") if kind == "message" else None))
    if cls is not None:
        try:
            model = cls.model_validate(item)
        except pydantic.ValidationError as exc:
            err = _from_validation_error("conversation.item.create", item, exc)
            err.param = f"{param}.{err.param}" if err.param else param
            err.message = err.message.replace(f"'{err.param[len(param) + 1 :]}'", f"'{err.param}'", 1)
            raise err from None
        # Unknown fields are ignored, so they must not come back in the item's echo either
        # (a fuzzed "tex]t" key in a content part made conversation.item.added invalid).
        declared = _declared_only(model, item)
        item.clear()
        item.update(declared)


def _declared_only(model: Any, raw: Any) -> Any:
    """``raw`` without the keys ``model`` (its validated form) does not declare, at every level."""
    if isinstance(model, pydantic.BaseModel) and isinstance(raw, dict):
        fields = type(model).model_fields
        return {k: _declared_only(getattr(model, k), v) for k, v in raw.items() if k in fields}
    if isinstance(model, list) and isinstance(raw, list) and len(model) == len(raw):
        return [_declared_only(m, r) for m, r in zip(model, raw, strict=True)]
    return raw


def _without_references(event: dict[str, Any]) -> dict[str, Any]:
    """``response.create`` minus its ``item_reference`` inputs, for the type check: openai-python
    declares them only in its ``…WithReferences`` params (TypedDicts, no model to validate)."""
    response = event.get("response")
    if not isinstance(response, dict) or not isinstance(response.get("input"), list):
        return event
    entries = response["input"]
    kept = []
    for i, entry in enumerate(entries):
        if isinstance(entry, dict) and entry.get("type") == "item_reference":
            if not isinstance(entry.get("id"), str):
                param = f"response.input[{i}].id"
                raise ProtocolError(
                    "missing_required_parameter", f"Missing required parameter: '{param}'.", param
                )
            continue
        kept.append(entry)
    return {**event, "response": {**response, "input": kept}}


def parse_client_event(raw: str | bytes | dict[str, Any]) -> dict[str, Any]:
    """Return the event as a dict; raise :class:`ProtocolError` when it is not a valid client event."""
    try:
        return _parse(raw)
    except RecursionError:
        # json and pydantic recurse per level: a deeply nested message is refused, not a crash.
        raise invalid_event("The message nests too deeply to be a client event.") from None


def _parse(raw: str | bytes | dict[str, Any]) -> dict[str, Any]:
    if isinstance(raw, dict):
        event = raw
    else:
        try:
            event = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise invalid_event(f"The message is not valid JSON: {exc}.") from None
    if not isinstance(event, dict):
        raise invalid_event("Each message must be a JSON object with a 'type' field.")
    kind = event.get("type")
    if kind is None:
        raise ProtocolError("missing_required_parameter", "The 'type' field is missing.", "type")
    classes = client_event_classes()
    if not isinstance(kind, str) or kind not in classes:
        raise invalid_event(
            f"Invalid value: '{kind}'. Supported values are: {', '.join(sorted(classes))}.", "type"
        )
    if "event_id" in event and not isinstance(event["event_id"], str):
        raise ProtocolError("invalid_type", "Invalid type for 'event_id': expected a string.", "event_id")
    if kind == "conversation.item.create":
        _check_item_discriminators(event.get("item"), "item")
    checked = _without_references(event) if kind == "response.create" else event
    try:
        classes[kind].model_validate(checked)
    except pydantic.ValidationError as exc:
        raise _from_validation_error(kind, event, exc) from None
    return event
