"""Stage timings of each turn, reported to clients that opt in as ``parley.metrics``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from parley.engine.response import ResponseRunner


@dataclass
class TurnTimes:
    """Milestones of one user turn (perf_counter seconds)."""

    speech_stopped: float | None = None
    stt_started: float | None = None
    stt_done: float | None = None
    speculative: bool = False
    extra: dict[str, float] = field(default_factory=dict)


class TurnMetrics:
    """Turn milestones by user item, and which response answers which turn."""

    def __init__(self) -> None:
        self._turns: dict[str, TurnTimes] = {}  # keyed by user item id
        self._answering: dict[str, str] = {}  # response id → user item id

    def begin(self, item_id: str, speech_stopped: float) -> TurnTimes:
        times = self._turns[item_id] = TurnTimes(speech_stopped=speech_stopped)
        return times

    def get(self, item_id: str) -> TurnTimes | None:
        return self._turns.get(item_id)

    def answered_by(self, response_id: str, item_id: str) -> None:
        self._answering[response_id] = item_id

    def event(self, runner: ResponseRunner) -> dict[str, Any]:
        """The ``parley.metrics`` event of a finished response (and forget its turn)."""
        user_item = self._answering.pop(runner.id, None)
        turn = self._turns.pop(user_item, None) if user_item else None
        gen = runner.generation
        origin = turn.speech_stopped if turn and turn.speech_stopped else runner.times.created

        def rel(t: float | None) -> float | None:
            return None if t is None else round((t - origin) * 1000, 1)

        return {
            "type": "parley.metrics",
            "response_id": runner.id,
            "item_id": user_item,
            "status": runner.status,
            "speculative": bool(turn and turn.speculative),
            "origin": "speech_stopped" if turn else "response.created",
            # Milliseconds relative to the origin; negative = done before the turn was confirmed.
            "stt_started_ms": rel(turn.stt_started) if turn else None,
            "stt_done_ms": rel(turn.stt_done) if turn else None,
            "llm_started_ms": rel(gen.times.started) if gen else None,
            "llm_first_token_ms": rel(gen.times.first_token) if gen else None,
            "first_clause_ms": rel(gen.times.first_clause) if gen else None,
            "tts_first_chunk_ms": rel(gen.times.first_audio) if gen else None,
            "first_audio_sent_ms": rel(runner.times.first_audio_sent),
            "response_created_ms": rel(runner.times.created),
            "done_ms": rel(runner.times.done),
            "usage": dict(runner.usage),
        }
