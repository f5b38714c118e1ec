"""Protocol errors: raised by handlers, turned into ``error`` events by the session.

A handler raises :class:`ProtocolError`; the session catches it, echoes the
client's ``event_id`` and carries on. Nothing about the session state changes
when an event is rejected.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ProtocolError(Exception):
    code: str
    message: str
    param: str | None = None
    type: str = "invalid_request_error"

    def __str__(self) -> str:  # pragma: no cover - convenience
        return f"{self.code}: {self.message}"


def invalid_event(message: str, param: str | None = None) -> ProtocolError:
    return ProtocolError("invalid_event", message, param)


def invalid_value(message: str, param: str | None = None) -> ProtocolError:
    return ProtocolError("invalid_value", message, param)


def missing_parameter(param: str) -> ProtocolError:
    return ProtocolError("missing_required_parameter", f"Missing required parameter: '{param}'.", param)


def unknown_item(item_id: str, param: str = "item_id") -> ProtocolError:
    return ProtocolError("item_not_found", f"Item with item_id '{item_id}' not found.", param)


def server_error(message: str) -> ProtocolError:
    return ProtocolError("server_error", message, None, type="server_error")
