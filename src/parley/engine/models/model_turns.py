"""Whose turn it is on a model that can do one thing at a time (llama.cpp's one context).

A plain lock lets a reply hold the model from its first token to its last: with several
conversations on one engine, a user who has just finished speaking waits for another
session's whole reply to be written before their own first word is. Here the holder can
*give way*: when someone is waiting, it steps out between two tokens, goes to the back of
the queue and carries on when its turn comes again. A listener never waits on text that is
far ahead of what they are hearing, since the model writes text many times faster than
speech is played.

Turns are first come, first served, which a ``threading.Lock`` does not promise: a thread
that releases and at once acquires again usually wins.
"""

from __future__ import annotations

import threading
from collections import deque


class ModelTurns:
    """A FIFO lock with :meth:`give_way`. Use as a context manager or acquire/release."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self._held = False
        self.handoffs = 0  # how often a holder stepped out for someone waiting (tests read it)

    @property
    def waiting(self) -> int:
        """How many are queued for the model (read without the condition: a hint, not a promise)."""
        return len(self._queue)

    def locked(self) -> bool:
        return self._held

    def acquire(self) -> None:
        me = object()
        with self._cond:
            self._queue.append(me)
            while self._held or self._queue[0] is not me:
                self._cond.wait()
            self._queue.popleft()
            self._held = True

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def give_way(self) -> bool:
        """If anyone is waiting: let all who are queued now go first, then hold the model again."""
        with self._cond:
            if not self._queue:
                return False
            self.handoffs += 1
            me = object()
            self._queue.append(me)
            self._held = False
            self._cond.notify_all()
            while self._held or self._queue[0] is not me:
                self._cond.wait()
            self._queue.popleft()
            self._held = True
            return True

    def __enter__(self) -> ModelTurns:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
