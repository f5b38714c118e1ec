"""Whose turn it is on a model that can do one thing at a time (llama.cpp's one context).

A plain lock lets a reply hold the model from its first token to its last: with several
conversations on one engine, a user who has just finished speaking waits for another
session's whole reply to be written before their own first word is. Here the holder can
*give way*: when someone is waiting, it steps out between two tokens, goes to the back of
the queue and carries on when its turn comes again. A listener never waits on text that is
far ahead of what they are hearing, since the model writes text many times faster than
speech is played.

Turns are first come, first served, which a ``threading.Lock`` does not promise: a thread
that releases and at once acquires again usually wins. Background work (evaluating a
session's prompt ahead of its first turn) queues behind every reply and gives way to any
reply that comes to wait; replies never give way to it.
"""

from __future__ import annotations

import threading
from collections import deque


class _Turn:
    __slots__ = ("background",)

    def __init__(self, background: bool) -> None:
        self.background = background


class ModelTurns:
    """A FIFO lock with :meth:`give_way`. Use as a context manager or acquire/release."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[_Turn] = deque()
        self._held = False
        self.handoffs = 0  # how often a holder stepped out for someone waiting (tests read it)

    @property
    def waiting(self) -> int:
        """How many replies are queued for the model (read without the condition: a hint)."""
        return sum(1 for turn in list(self._queue) if not turn.background)

    def locked(self) -> bool:
        return self._held

    def acquire(self, *, background: bool = False) -> None:
        with self._cond:
            self._wait_turn(self._enqueue(background))

    def _enqueue(self, background: bool) -> _Turn:
        me = _Turn(background)
        if background:
            self._queue.append(me)
        else:  # ahead of all background work, behind the replies already waiting
            at = next((i for i, t in enumerate(self._queue) if t.background), len(self._queue))
            self._queue.insert(at, me)
        return me

    def _wait_turn(self, me: _Turn) -> None:
        while self._held or self._queue[0] is not me:
            self._cond.wait()
        self._queue.popleft()
        self._held = True

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def give_way(self, *, background: bool = False) -> bool:
        """If a reply is waiting: let the replies queued now go first, then hold the model again.

        A reply (``background=False``) goes behind the replies waiting now, a background
        holder behind everything.
        """
        with self._cond:
            if not any(not t.background for t in self._queue):
                return False
            self.handoffs += 1
            me = self._enqueue(background)
            self._held = False
            self._cond.notify_all()
            self._wait_turn(me)
            return True

    def __enter__(self) -> ModelTurns:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
