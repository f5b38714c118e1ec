"""The sessions benchmarks drive: what users actually get, and the bare engine for comparison.

``ui`` is the session the web page sends on connect (its default instructions, read from the
page's own ``defaults.js`` so the two cannot drift apart) plus the server tools that ``parley
serve`` adds to every session it mints. ``bare`` is the engine's defaults: no instructions of
the client's, no tools.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

PROFILES = ("ui", "bare")


@cache
def _defaults_js() -> str:
    return resources.files("parley.web").joinpath("static/js/defaults.js").read_text()


def ui_instructions() -> str:
    match = re.search(r"DEFAULT_INSTRUCTIONS = `([^`]*)`", _defaults_js())
    if match is None:
        raise RuntimeError("defaults.js no longer defines DEFAULT_INSTRUCTIONS as a template string")
    return match.group(1)


def ui_setting(name: str) -> str:
    """A string setting of the page's DEFAULT_SETTINGS (``turn``, ``eagerness``, ``voice``…)."""
    match = re.search(rf'^\s*{name}: "([^"]*)"', _defaults_js(), re.M)
    if match is None:
        raise RuntimeError(f"defaults.js no longer sets {name!r} in DEFAULT_SETTINGS")
    return match.group(1)


def serve_tools() -> list[dict[str, Any]]:
    from parley.server.tools import default_registry

    return default_registry().definitions()


def session(profile: str, silence_ms: int, *, tools: bool = True, turn: str | None = None) -> dict[str, Any]:
    """The ``session`` of the first ``session.update`` for ``profile``.

    ``tools=False`` when going through ``parley serve``, which adds (and runs) its tools itself.
    ``turn`` overrides the turn detection (``server_vad`` or ``semantic_vad``); the ``ui``
    profile otherwise uses the page's default, the ``bare`` profile ``server_vad``.
    """
    kind = turn or (ui_setting("turn") if profile == "ui" else "server_vad")
    turn_detection: dict[str, Any]
    if kind == "semantic_vad":
        turn_detection = {
            "type": "semantic_vad",
            "eagerness": ui_setting("eagerness"),
            "create_response": True,
            "interrupt_response": True,
        }
    else:
        turn_detection = {
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 300,
            "silence_duration_ms": silence_ms,
            "create_response": True,
            "interrupt_response": True,
        }
    audio_in: dict[str, Any] = {"transcription": {"model": "whisper-1"}, "turn_detection": turn_detection}
    if profile == "bare":
        return {"type": "realtime", "audio": {"input": audio_in}}
    pcm = {"type": "audio/pcm", "rate": 24000}
    return {
        "type": "realtime",
        "output_modalities": ["audio"],
        "instructions": ui_instructions(),
        **({"tools": serve_tools()} if tools else {}),
        "audio": {
            "input": {"format": pcm, **audio_in},
            "output": {"format": pcm, "voice": ui_setting("voice"), "speed": 1},
        },
    }
