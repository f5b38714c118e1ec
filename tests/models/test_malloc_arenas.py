"""glibc's malloc arenas are capped before the models' threads allocate (see engine/models/memory.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

_PROGRAM = textwrap.dedent(
    """
    import ctypes, sys, threading
    from parley.engine.models.memory import limit_malloc_arenas
    if sys.argv[1] == "limit":
        assert limit_malloc_arenas()
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    start = threading.Barrier(12)

    def allocate():
        start.wait()  # all at once, so they meet locked arenas
        for _ in range(2000):
            p = libc.malloc(64 * 1024)
            libc.free(p)

    threads = [threading.Thread(target=allocate) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    libc.malloc_stats()  # one "Arena n:" block per arena, on stderr
    """
)


def _arenas(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM, mode], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return sum(1 for line in done.stderr.splitlines() if line.startswith("Arena "))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_the_cap_holds_with_many_allocating_threads() -> None:
    assert _arenas("limit") <= 2
    assert _arenas("none") > 2  # the control: without the cap these threads get their own arenas
