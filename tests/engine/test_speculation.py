"""Speculation alone: work started in a pause is kept only for the same turn in the same state."""

from __future__ import annotations

import asyncio
from typing import Any

from parley.engine.models.base import Transcript
from parley.engine.speculation import Speculator

CONVERSATION, CONFIG = 3, 7


class Work:
    """Coroutines that stand in for transcription and generation, and say whether they were cancelled."""

    def __init__(self) -> None:
        self.cancelled: list[str] = []

    async def run(self, name: str, result: Any = None) -> Any:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled.append(name)
            raise
        return result


def spawn(coro: Any) -> asyncio.Task[Any]:
    return asyncio.get_running_loop().create_task(coro)


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def started(work: Work, speculator: Speculator, start: int = 1000, name: str = "stt") -> Any:
    spec = speculator.start(start, start + 4800, CONVERSATION, CONFIG, work.run(name, Transcript("hi")))
    speculator.generate(spec, work.run(name + "-reply"))
    await settle()
    return spec


async def test_adopted_when_the_turn_and_the_state_are_the_same() -> None:
    work, speculator = Work(), Speculator(spawn)
    spec = await started(work, speculator)
    assert speculator.adopt(1000, CONVERSATION, CONFIG) is spec
    assert speculator.current is None
    await settle()
    assert work.cancelled == []  # handed over, not dropped
    spec.cancel()


async def test_dropped_when_the_conversation_or_the_config_changed() -> None:
    for conversation, config in ((CONVERSATION + 1, CONFIG), (CONVERSATION, CONFIG + 1)):
        work, speculator = Work(), Speculator(spawn)
        await started(work, speculator)
        assert speculator.adopt(1000, conversation, config) is None
        await settle()
        assert sorted(work.cancelled) == ["stt", "stt-reply"]


async def test_dropped_when_the_turn_starts_elsewhere() -> None:
    work, speculator = Work(), Speculator(spawn)
    await started(work, speculator)
    assert speculator.adopt(2000, CONVERSATION, CONFIG) is None
    await settle()
    assert sorted(work.cancelled) == ["stt", "stt-reply"]


async def test_speech_resumed_drops_it_and_a_new_probe_replaces_it() -> None:
    work, speculator = Work(), Speculator(spawn)
    first = await started(work, speculator, name="first")
    assert speculator.is_current(first.stt)
    second = await started(work, speculator, name="second")  # a later probe of the same turn
    assert not speculator.is_current(first.stt) and speculator.is_current(second.stt)
    assert sorted(work.cancelled) == ["first", "first-reply"]
    speculator.drop()  # speech resumed
    await settle()
    assert speculator.current is None
    assert sorted(work.cancelled) == ["first", "first-reply", "second", "second-reply"]
    assert speculator.adopt(1000, CONVERSATION, CONFIG) is None


async def test_the_reply_can_go_while_the_transcript_stays() -> None:
    work, speculator = Work(), Speculator(spawn)
    spec = await started(work, speculator)
    spec.cancel_generation()  # the turn is kept but must not be answered (create_response off)
    await settle()
    assert work.cancelled == ["stt-reply"] and not spec.stt.done()
    spec.cancel()
