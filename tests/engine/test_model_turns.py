"""ModelTurns: first come, first served, and a holder that gives way goes to the back."""

from __future__ import annotations

import threading
import time

from parley.engine.models.model_turns import ModelTurns


def test_give_way_lets_every_waiter_go_first_then_resumes() -> None:
    turns = ModelTurns()
    order: list[str] = []
    turns.acquire()
    assert not turns.give_way()  # nobody waiting: keeps the model

    def waiter(name: str) -> None:
        with turns:
            order.append(name)

    threads = [threading.Thread(target=waiter, args=(n,)) for n in ("b", "c")]
    for t in threads:
        t.start()
        while turns.waiting < threads.index(t) + 1:
            time.sleep(0.001)
    assert turns.give_way()
    order.append("a")  # back after both waiters
    turns.release()
    for t in threads:
        t.join(5)
    assert order == ["b", "c", "a"]
    assert turns.handoffs == 1


def test_first_come_first_served() -> None:
    turns = ModelTurns()
    order: list[int] = []
    turns.acquire()

    def waiter(i: int) -> None:
        with turns:
            order.append(i)

    threads = []
    for i in range(5):
        t = threading.Thread(target=waiter, args=(i,))
        t.start()
        threads.append(t)
        while turns.waiting < i + 1:
            time.sleep(0.001)
    turns.release()
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3, 4]


def test_background_work_waits_behind_replies_and_steps_out_for_them() -> None:
    turns = ModelTurns()
    order: list[str] = []
    turns.acquire()  # a reply holds the model

    def run(name: str, background: bool) -> None:
        turns.acquire(background=background)
        order.append(name)
        turns.release()

    prefill = threading.Thread(target=run, args=("prefill", True))
    prefill.start()
    while len(turns._queue) < 1:
        time.sleep(0.001)
    assert turns.waiting == 0  # background work is not a reply waiting
    assert not turns.give_way()  # so the reply does not step out for it
    reply = threading.Thread(target=run, args=("reply", False))
    reply.start()
    while turns.waiting < 1:
        time.sleep(0.001)
    turns.release()
    for t in (prefill, reply):
        t.join(5)
    assert order == ["reply", "prefill"]  # the later reply went ahead of the queued prefill

    # A background holder gives way to a reply that comes to wait, then carries on.
    turns.acquire(background=True)
    reply = threading.Thread(target=run, args=("reply 2", False))
    reply.start()
    while turns.waiting < 1:
        time.sleep(0.001)
    assert turns.give_way(background=True)
    order.append("prefill resumed")
    turns.release()
    reply.join(5)
    assert order[-2:] == ["reply 2", "prefill resumed"]
