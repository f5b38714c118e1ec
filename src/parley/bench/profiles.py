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
def ui_instructions() -> str:
    text = resources.files("parley.web").joinpath("static/js/defaults.js").read_text()
    match = re.search(r"DEFAULT_INSTRUCTIONS = `([^`]*)`", text)
    if match is None:
        raise RuntimeError("defaults.js no longer defines DEFAULT_INSTRUCTIONS as a template string")
    return match.group(1)


def serve_tools() -> list[dict[str, Any]]:
    from parley.server.tools import default_registry

    return default_registry().definitions()


def session(profile: str, silence_ms: int, *, tools: bool = True) -> dict[str, Any]:
    """The ``session`` of the first ``session.update`` for ``profile``.

    ``tools=False`` when going through ``parley serve``, which adds (and runs) its tools itself.
    """
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
            "output": {"format": pcm, "voice": "marin", "speed": 1},
        },
    }
