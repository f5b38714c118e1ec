"""Identifiers in the shapes OpenAI uses (``event_…``, ``item_…``, ``resp_…``).

Clients only rely on the prefix and on uniqueness; a random suffix keeps ids
unguessable, which matters for ``ek_`` secrets and call ids.
"""

from __future__ import annotations

import secrets

_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _suffix(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_id(prefix: str, length: int = 22) -> str:
    """Return ``<prefix>_<random>``, e.g. ``new_id("item")`` → ``item_C9x…``."""
    return f"{prefix}_{_suffix(length)}"


def event_id() -> str:
    return new_id("event")


def item_id() -> str:
    return new_id("item")


def response_id() -> str:
    return new_id("resp")


def session_id() -> str:
    return new_id("sess")


def conversation_id() -> str:
    return new_id("conv")


def call_id() -> str:
    """Function-call id (``call_…``), distinct from a WebRTC call id."""
    return new_id("call")


def rtc_call_id() -> str:
    return new_id("rtc")


def client_secret() -> str:
    # Secrets carry more entropy than ids: they are bearer credentials.
    return new_id("ek", 40)
