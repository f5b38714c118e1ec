"""The conversation as text: one :class:`Turn` per message item, kept in step with the server.

User turns fill from input transcription, assistant turns from the audio
transcript (or text); after a truncation the server's trimmed copy of the item
replaces the text, so what is shown is what the user heard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from parley.client.options import Turn

if TYPE_CHECKING:
    from parley.client.conversation import Conversation


class TranscriptModel:
    def __init__(self, conv: Conversation) -> None:
        self._conv = conv
        self.turns: list[Turn] = []
        self._by_item: dict[str, Turn] = {}

    def turn(self, item_id: str) -> Turn | None:
        return self._by_item.get(item_id)

    async def item_added(self, ev: dict) -> None:
        item = ev.get("item") or {}
        if item.get("type") != "message" or not item.get("id") or item["id"] in self._by_item:
            return
        text = ""
        for part in item.get("content") or []:
            text += part.get("text") or part.get("transcript") or ""
        turn = Turn(item.get("role", "?"), item["id"], text, done=bool(text))
        self.turns.append(turn)
        self._by_item[item["id"]] = turn

    async def user_delta(self, ev: dict) -> None:
        self._append(ev)
        await self._conv.signal(
            "user.transcript.delta", {"item_id": ev.get("item_id"), "delta": ev.get("delta") or ""}
        )

    async def user_done(self, ev: dict) -> None:
        text = self._finish(ev)
        await self._conv.signal("user.transcript.done", {"item_id": ev.get("item_id"), "text": text})

    async def assistant_delta(self, ev: dict) -> None:
        self._append(ev)
        await self._conv.signal(
            "assistant.transcript.delta", {"item_id": ev.get("item_id"), "delta": ev.get("delta") or ""}
        )

    async def assistant_done(self, ev: dict) -> None:
        text = self._finish(ev)
        await self._conv.signal("assistant.transcript.done", {"item_id": ev.get("item_id"), "text": text})

    async def truncated(self, ev: dict) -> None:
        # The server dropped the unheard words; fetch what it kept so the display shows the same
        # (both official SDKs retrieve the item after a truncation too).
        self._conv.spawn(self._refresh(ev.get("item_id", "")))

    def _append(self, ev: dict) -> None:
        turn = self._by_item.get(ev.get("item_id", ""))
        if turn is not None:
            turn.text += ev.get("delta") or ""

    def _finish(self, ev: dict) -> str:
        turn = self._by_item.get(ev.get("item_id", ""))
        text = ev.get("transcript") or ""
        if turn is not None:
            turn.text, turn.done = text, True
        return text

    async def _refresh(self, item_id: str) -> None:
        try:
            item = await self._conv.retrieve_item(item_id)
        except Exception:
            return  # old servers without retrieve: the full transcript stays, marked interrupted
        text = "".join(p.get("transcript") or p.get("text") or "" for p in item.get("content") or [])
        turn = self._by_item.get(item_id)
        if turn is not None:
            turn.text = text
        await self._conv.signal("assistant.transcript.truncated", {"item_id": item_id, "text": text})
