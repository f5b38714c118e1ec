"""The sessions benchmarks drive: what users actually get, and the bare engine for comparison.

``ui`` is the session the web page sends on connect (its own defaults, from the page's
``defaults.js``) plus the server tools that ``parley serve`` adds to every session it mints.
``bare`` is the engine's defaults: no instructions of the client's, no tools.
"""

from __future__ import annotations

from typing import Any

from parley.server.page_defaults import page_session

PROFILES = ("ui", "bare")


def serve_tools() -> list[dict[str, Any]]:
    from parley.server.tools import default_registry

    return default_registry().definitions()


def session(profile: str, silence_ms: int, *, tools: bool = True, turn: str | None = None) -> dict[str, Any]:
    """The ``session`` of the first ``session.update`` for ``profile``.

    ``tools=False`` when going through ``parley serve``, which adds (and runs) its tools itself.
    ``turn`` overrides the turn detection (``server_vad`` or ``semantic_vad``); the ``ui``
    profile otherwise uses the page's default, the ``bare`` profile ``server_vad``.
    """
    if profile == "ui":
        return page_session(serve_tools() if tools else None, turn=turn, silence_ms=silence_ms)
    ui = page_session(None, turn=turn or "server_vad", silence_ms=silence_ms)
    return {
        "type": "realtime",
        "audio": {"input": {k: ui["audio"]["input"][k] for k in ("transcription", "turn_detection")}},
    }
