"""The session the web page opens with: its own defaults, read from ``defaults.js``.

The page's defaults live in one place, the ES module the browser loads. Python reads them
from there (so the two cannot drift apart) for what must match the page exactly: the
prompt ``parley serve`` prepares at start-up, and the sessions benchmarks drive.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any


@cache
def _defaults_js() -> str:
    return resources.files("parley.web").joinpath("static/js/defaults.js").read_text()


def page_instructions() -> str:
    match = re.search(r"DEFAULT_INSTRUCTIONS = `([^`]*)`", _defaults_js())
    if match is None:
        raise RuntimeError("defaults.js no longer defines DEFAULT_INSTRUCTIONS as a template string")
    return match.group(1)


def page_setting(name: str) -> str:
    """A string setting of the page's DEFAULT_SETTINGS (``turn``, ``eagerness``, ``voice``…)."""
    match = re.search(rf'^\s*{name}: "([^"]*)"', _defaults_js(), re.M)
    if match is None:
        raise RuntimeError(f"defaults.js no longer sets {name!r} in DEFAULT_SETTINGS")
    return match.group(1)


def page_session(
    tools: list[dict[str, Any]] | None = None, *, turn: str | None = None, silence_ms: int = 500
) -> dict[str, Any]:
    """The ``session`` the page sends when it connects (through ``parley serve``, ``tools`` are serve's).

    ``turn`` overrides the page's turn detection (``server_vad`` or ``semantic_vad``).
    """
    kind = turn or page_setting("turn")
    turn_detection: dict[str, Any]
    if kind == "semantic_vad":
        turn_detection = {
            "type": "semantic_vad",
            "eagerness": page_setting("eagerness"),
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
    pcm = {"type": "audio/pcm", "rate": 24000}
    return {
        "type": "realtime",
        "output_modalities": ["audio"],
        "instructions": page_instructions(),
        **({"tools": tools} if tools else {}),
        "audio": {
            "input": {
                "format": pcm,
                "transcription": {"model": "whisper-1"},
                "turn_detection": turn_detection,
            },
            "output": {"format": pcm, "voice": page_setting("voice"), "speed": 1},
        },
    }
