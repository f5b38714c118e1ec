"""The conversation: an ordered list of items plus what only the server knows about them.

Each item is kept in its wire shape (what ``conversation.item.done`` carries)
next to private state: the canonical audio of audio content and, for spoken
assistant items, the word timings that let ``truncate`` keep exactly the
words the user heard.
"""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from parley.engine.models.base import WordTiming
from parley.protocol import ids
from parley.protocol.audio_formats import CANONICAL_RATE, AudioFormat, OutputEncoder
from parley.protocol.errors import ProtocolError, invalid_value, unknown_item

# Items retrieved with their audio stay under ~1 MiB on the wire (openai-python
# 1.x's default frame limit); longer audio is omitted from ``retrieved``.
MAX_RETRIEVE_AUDIO_SAMPLES = 15 * CANONICAL_RATE


@dataclass
class TimedWord:
    """A word of an assistant transcript at its position in the item's audio (ms)."""

    text: str
    start_ms: float
    end_ms: float


@dataclass
class Item:
    wire: dict[str, Any]
    audio: np.ndarray | None = None  # canonical int16 24 kHz (content part 0)
    words: list[TimedWord] = field(default_factory=list)
    # What the LLM sees for a user audio item, even when input transcription
    # events are off (then the wire transcript stays null, as on OpenAI).
    heard_text: str | None = None

    @property
    def id(self) -> str:
        return self.wire["id"]

    @property
    def audio_ms(self) -> float:
        return 0.0 if self.audio is None else len(self.audio) * 1000 / CANONICAL_RATE

    def add_words(self, words: list[WordTiming], offset_ms: float) -> None:
        self.words.extend(
            TimedWord(w.text, offset_ms + w.start * 1000, offset_ms + w.end * 1000) for w in words
        )

    def append_audio(self, pcm: np.ndarray) -> None:
        self.audio = pcm.copy() if self.audio is None else np.concatenate([self.audio, pcm])


def audio_b64(pcm: np.ndarray, fmt: AudioFormat) -> str:
    return base64.b64encode(OutputEncoder(fmt)(pcm, last=True)).decode()


class Conversation:
    def __init__(self) -> None:
        self.id = ids.conversation_id()
        self._items: list[Item] = []
        self._by_id: dict[str, Item] = {}
        self.version = 0  # bumped on every change; speculative work checks it

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._by_id

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[Item]:
        return list(self._items)

    def get(self, item_id: str, param: str = "item_id") -> Item:
        item = self._by_id.get(item_id)
        if item is None:
            raise unknown_item(item_id, param)
        return item

    def last_id(self) -> str | None:
        return self._items[-1].id if self._items else None

    def insert(self, item: Item, previous_item_id: str | None = None) -> str | None:
        """Insert after ``previous_item_id`` (``"root"``: at the start; None: at the end).

        Returns the id of the item now preceding it (None at the start).
        """
        if item.id in self._by_id:
            raise ProtocolError("item_already_exists", f"Item with id '{item.id}' already exists.", "item.id")
        if previous_item_id is None:
            position = len(self._items)
        elif previous_item_id == "root":
            position = 0
        else:
            if previous_item_id not in self._by_id:
                raise ProtocolError(
                    "previous_item_not_found",
                    f"Previous item with id '{previous_item_id}' not found.",
                    "previous_item_id",
                )
            position = self._items.index(self._by_id[previous_item_id]) + 1
        self._items.insert(position, item)
        self._by_id[item.id] = item
        self.version += 1
        return self._items[position - 1].id if position > 0 else None

    def delete(self, item_id: str) -> None:
        item = self.get(item_id)
        self._items.remove(item)
        del self._by_id[item_id]
        self.version += 1

    def touch(self) -> None:
        self.version += 1

    def truncate(self, item_id: str, content_index: int, audio_end_ms: int) -> Item:
        """Cut an assistant item's audio at ``audio_end_ms`` and keep only the words heard.

        A word counts as heard once at least half of it has played.
        """
        item = self.get(item_id)
        wire = item.wire
        if wire.get("type") != "message" or wire.get("role") != "assistant":
            raise invalid_value("Only assistant messages can be truncated.", "item_id")
        content = wire.get("content") or []
        if content_index != 0 or content_index >= len(content) or content[0].get("type") != "output_audio":
            raise invalid_value(
                f"Invalid 'content_index': {content_index}. The item has no audio content at that index.",
                "content_index",
            )
        if audio_end_ms < 0:
            raise invalid_value("Invalid 'audio_end_ms': must be non-negative.", "audio_end_ms")
        total_ms = item.audio_ms
        if audio_end_ms > total_ms + 0.5:
            raise invalid_value(
                f"Audio content of {int(total_ms)}ms is already shorter than {audio_end_ms}ms",
                "audio_end_ms",
            )
        if item.audio is not None:
            item.audio = item.audio[: int(audio_end_ms * CANONICAL_RATE / 1000)]
        heard = [w for w in item.words if (w.start_ms + w.end_ms) / 2 <= audio_end_ms]
        item.words = heard
        content[0]["transcript"] = join_words([w.text for w in heard])
        self.version += 1
        return item

    # --- wire views -------------------------------------------------------

    @staticmethod
    def wire_view(item: Item) -> dict[str, Any]:
        """The item as carried by added/done events: audio bytes omitted."""
        wire = copy.deepcopy(item.wire)
        for part in wire.get("content") or []:
            part.pop("audio", None)
        return wire

    @staticmethod
    def retrieved_view(item: Item, fmt: AudioFormat) -> dict[str, Any]:
        wire = Conversation.wire_view(item)
        content = wire.get("content") or []
        if (
            item.audio is not None
            and content
            and content[0].get("type") in ("input_audio", "output_audio")
            and len(item.audio) <= MAX_RETRIEVE_AUDIO_SAMPLES
        ):
            content[0]["audio"] = audio_b64(item.audio, fmt)
        return wire


def join_words(words: list[str]) -> str:
    return " ".join(w.strip() for w in words if w.strip())
