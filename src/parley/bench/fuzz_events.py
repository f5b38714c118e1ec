"""Hostile client events, reproducible from a seed: what ``parley bench fuzz`` sends.

Each generator returns a frame (``str`` for a text frame, ``bytes`` for a
binary one) and the family it belongs to, so a report can say which kind of
input did what. Families: broken JSON, binary frames, deep nesting, wrong types
at every field of valid events, random mutations of valid events, absurd values
(negative or huge times, NaN, giant strings, lone surrogates), floods of
``response.create``/``response.cancel`` and appends of odd byte counts.
"""

from __future__ import annotations

import base64
import copy
import json
import random
from collections.abc import Callable, Iterator
from typing import Any

# Valid client events the mutations start from (GA shapes, small payloads).
TEMPLATES: list[dict[str, Any]] = [
    {"type": "session.update", "session": {"type": "realtime", "instructions": "Be brief."}},
    {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "output_modalities": ["text"],
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 500, "threshold": 0.5},
                },
                "output": {"voice": "marin", "speed": 1.0},
            },
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
            "tool_choice": "auto",
            "max_output_tokens": 100,
        },
    },
    {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\x00\x01" * 240).decode()},
    {"type": "input_audio_buffer.commit"},
    {"type": "input_audio_buffer.clear"},
    {"type": "output_audio_buffer.clear"},
    {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
    },
    {
        "type": "conversation.item.create",
        "previous_item_id": "item_nope",
        "item": {"type": "function_call_output", "call_id": "call_x", "output": "{}"},
    },
    {"type": "conversation.item.retrieve", "item_id": "item_nope"},
    {"type": "conversation.item.truncate", "item_id": "item_nope", "content_index": 0, "audio_end_ms": 100},
    {"type": "conversation.item.delete", "item_id": "item_nope"},
    {"type": "response.create", "response": {"output_modalities": ["text"], "instructions": "Say hi."}},
    {"type": "response.cancel"},
    {"type": "response.cancel", "response_id": "resp_nope"},
]

GIANT = 1 << 20  # a 1 MiB string: large, but under the engine's message limit

ABSURD: list[Any] = [
    -1,
    -(2**63),
    2**63,
    10**400,
    1e308,
    -0.0,
    float("nan"),
    float("inf"),
    float("-inf"),
    "",
    "\ud800",
    "\udfff\ud800",
    "\x00",
    "\u202e" * 10,
    "💥" * 1000,
    None,
    True,
    [],
    {},
    [None] * 50,
    {"type": None},
]

WRONG_TYPES: list[Any] = [None, True, 0, -5, 3.5, "x", [], [1, "a"], {}, {"type": "x"}]


def _dumps(event: Any) -> str:
    # allow_nan: NaN and Infinity literals are exactly the absurd values to send.
    return json.dumps(event, allow_nan=True, ensure_ascii=False, separators=(",", ":"))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every field path in a JSON value (dict keys and list indexes), parents first."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _set(node: Any, path: tuple[Any, ...], value: Any) -> None:
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def _delete(node: Any, path: tuple[Any, ...]) -> None:
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]


class Fuzzer:
    """A seeded stream of hostile frames; ``next()`` → (frame, family)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.families: list[tuple[str, Callable[[], str | bytes], int]] = [
            ("broken_json", self.broken_json, 10),
            ("binary", self.binary, 6),
            ("deep_nesting", self.deep_nesting, 3),
            ("wrong_type", self.wrong_type, 25),
            ("mutation", self.mutation, 25),
            ("absurd_value", self.absurd_value, 15),
            # A flood is 10-60 frames: at weight 1 floods are about a quarter of all frames.
            ("flood", self.flood, 1),
            ("odd_append", self.odd_append, 8),
        ]
        self._weights = [w for _, _, w in self.families]
        self._flood_left = 0

    def next(self) -> tuple[str | bytes, str]:
        if self._flood_left:
            self._flood_left -= 1
            return self._flood_event(), "flood"
        name, make, _ = self.rng.choices(self.families, self._weights)[0]
        return make(), name

    def template(self) -> dict[str, Any]:
        return copy.deepcopy(self.rng.choice(TEMPLATES))

    # ------------------------------------------------------------ families

    def broken_json(self) -> str:
        rng = self.rng
        text = _dumps(self.template())
        choice = rng.randrange(6)
        if choice == 0:
            return text[: rng.randrange(len(text))]  # truncated
        if choice == 1:
            i = rng.randrange(len(text))
            return text[:i] + rng.choice('{}[]",:\\') + text[i:]
        if choice == 2:
            return rng.choice(
                ["", " ", "null", "0", "[]", '"session.update"', "true", "{}", "{'a':1}", "\ufeff{}"]
            )
        if choice == 3:
            return text + rng.choice(["}", ",", " x", "{}"])  # trailing garbage
        if choice == 4:
            return '{"type":"session.update","type":"response.create"}'  # duplicate keys
        return "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(1, 200)))

    def binary(self) -> bytes:
        rng = self.rng
        choice = rng.randrange(4)
        if choice == 0:
            return rng.randbytes(rng.randrange(0, 4096))
        if choice == 1:
            return _dumps(self.template()).encode()  # a valid event in a binary frame
        if choice == 2:
            return b"\xff\xfe" + _dumps(self.template()).encode("utf-16-le")
        return b"\xc3\x28" + _dumps(self.template()).encode()  # invalid UTF-8

    def deep_nesting(self) -> str:
        rng = self.rng
        depth = rng.choice([100, 1000, 10_000, 100_000])
        if rng.random() < 0.5:
            return "[" * depth + "]" * depth
        inner = '{"a":' * depth + "1" + "}" * depth
        return '{"type":"session.update","session":{"type":"realtime","instructions":' + inner + "}}"

    def wrong_type(self) -> str:
        event = self.template()
        path = self.rng.choice(list(_paths(event)))
        _set(event, path, copy.deepcopy(self.rng.choice(WRONG_TYPES)))
        return _dumps(event)

    def mutation(self) -> str:
        rng = self.rng
        event = self.template()
        for _ in range(rng.randrange(1, 4)):
            paths = list(_paths(event))
            op = rng.randrange(4)
            if op == 0 and paths:
                path = rng.choice(paths)
                _delete(event, path) if isinstance(path[-1], str) else _set(event, path, None)
            elif op == 1:
                event[rng.choice(["junk", "event_id", "type", "response", "item"])] = rng.choice(
                    [*WRONG_TYPES, "x" * rng.randrange(100)]
                )
            elif op == 2 and paths:
                _set(event, rng.choice(paths), copy.deepcopy(rng.choice(TEMPLATES)))
            else:
                event["type"] = rng.choice(
                    [t["type"] for t in TEMPLATES]
                    + ["response.created", "session.created", "x", "RESPONSE.CREATE"]
                )
        return _dumps(event)

    def absurd_value(self) -> str:
        rng = self.rng
        event = self.template()
        value = rng.choice(ABSURD)
        if rng.random() < 0.02:
            value = "x" * GIANT
        paths = list(_paths(event))
        if paths:
            _set(event, rng.choice(paths), copy.deepcopy(value))
        text = _dumps(event)
        if isinstance(value, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in value):
            text = json.dumps(event, ensure_ascii=True, allow_nan=True)  # lone surrogates as \ud800 escapes
        return text

    def flood(self) -> str:
        self._flood_left = self.rng.randrange(10, 60)
        return self._flood_event()

    def _flood_event(self) -> str:
        if self.rng.random() < 0.5:
            return _dumps({"type": "response.create", "response": {"output_modalities": ["text"]}})
        return _dumps({"type": "response.cancel"})

    def odd_append(self) -> str:
        rng = self.rng
        n = rng.choice([0, 1, 3, 5, 7, 479, 481, 4801, rng.randrange(1, 20_000)])
        audio = base64.b64encode(rng.randbytes(n)).decode()
        choice = rng.randrange(5)
        if choice == 1:
            audio = audio.rstrip("=")  # missing padding
        elif choice == 2:
            audio = audio[: max(0, len(audio) - 1)] + "!"  # not base64
        elif choice == 3:
            audio = " " + audio + "\n"
        return _dumps({"type": "input_audio_buffer.append", "audio": audio})
