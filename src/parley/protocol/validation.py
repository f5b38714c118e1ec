"""Validation of events against openai-python's own Realtime types.

openai-python's models allow extra fields and its unions are only tagged for
its own lenient parser, so we dispatch on ``type`` ourselves and validate
against the one matching class. ``strict`` additionally rejects any field the
official types do not declare, which catches misspelt or beta-era fields that
a lenient client would silently ignore.
"""

from __future__ import annotations

import functools
import typing
from typing import Any, get_args, get_origin

import pydantic
from openai import BaseModel as OpenAIModel
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent

# The GA server sends these on the session object although openai-python's
# ``RealtimeSessionCreateRequest`` (the type of session.created/updated) does
# not declare them; clients read them, so they are expected, not extra.
_ALLOWED_EXTRA_PATHS = {
    ("session", "id"),
    ("session", "object"),
    ("session", "expires_at"),
}


def _union_members(alias: Any) -> list[type[OpenAIModel]]:
    args = get_args(alias)
    if get_origin(alias) is typing.Annotated:
        args = get_args(args[0])
    return [a for a in args if isinstance(a, type) and issubclass(a, OpenAIModel)]


def _type_literal(cls: type[OpenAIModel]) -> str:
    field = cls.model_fields["type"]
    (value,) = get_args(field.annotation)
    return value


@functools.cache
def server_event_classes() -> dict[str, type[OpenAIModel]]:
    return {_type_literal(c): c for c in _union_members(RealtimeServerEvent)}


@functools.cache
def client_event_classes() -> dict[str, type[OpenAIModel]]:
    return {_type_literal(c): c for c in _union_members(RealtimeClientEvent)}


class EventValidationError(ValueError):
    pass


def _extras(model: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths of fields present in the payload that the official type does not declare."""
    found: list[tuple[str, ...]] = []
    if isinstance(model, pydantic.BaseModel):
        for key in model.model_extra or {}:
            found.append((*path, key))
        for name in model.model_fields_set:
            found.extend(_extras(getattr(model, name), (*path, name)))
    elif isinstance(model, list):
        for i, value in enumerate(model):
            found.extend(_extras(value, (*path, str(i))))
    elif isinstance(model, dict):
        for key, value in model.items():
            found.extend(_extras(value, (*path, str(key))))
    return found


def _validate(event: dict, classes: dict[str, type[OpenAIModel]], strict: bool) -> OpenAIModel:
    kind = event.get("type")
    cls = classes.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise EventValidationError(f"unknown event type {kind!r}")
    try:
        model = cls.model_validate(event)
    except pydantic.ValidationError as exc:
        raise EventValidationError(f"{kind}: {exc}") from exc
    if strict:
        extras = [p for p in _extras(model) if p not in _ALLOWED_EXTRA_PATHS]
        if extras:
            raise EventValidationError(f"{kind}: undeclared fields {['.'.join(p) for p in extras]}")
    return model


def validate_server_event(event: dict, strict: bool = True) -> OpenAIModel:
    """Validate one server event; raises :class:`EventValidationError`."""
    if not isinstance(event.get("event_id"), str):
        raise EventValidationError(f"{event.get('type')}: event_id must be a string")
    return _validate(event, server_event_classes(), strict)


def validate_client_event(event: dict, strict: bool = True) -> OpenAIModel:
    return _validate(event, client_event_classes(), strict)
