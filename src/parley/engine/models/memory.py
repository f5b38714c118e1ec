"""Give freed heap memory back to the OS.

Whisper's encoder on a long window, Piper on a long chunk and model loading
allocate hundreds of MB of short-lived buffers from several threads. glibc
keeps freed memory in per-thread arenas, so RSS ratchets up (measured: 1.03 GB
after a stress run vs 0.73 GB with a trim after each heavy step).
``malloc_trim(0)`` costs ~0.1 ms and is called only after such steps.

The arenas themselves are the larger cost: glibc gives each thread that meets a
locked arena a new one, up to 8 per core, and memory freed in one arena serves
no other. Whisper, llama.cpp, Piper, smart-turn and the asyncio executor all
allocate from their own threads, so in spoken soaks RSS grew ~20 MB a minute
without levelling off (3 sessions, 10 minutes: 1160 → 1541 MB after every
session closed, 1424 MB after ``malloc_trim``), with no Python object left
behind. With two arenas the same run grew 5.5 MB a minute and came back to
1179 MB (from 1125) after ``malloc_trim``; :func:`limit_malloc_arenas` sets
that before models load.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
from collections.abc import Callable

log = logging.getLogger(__name__)


def _load_trim() -> Callable[[], None]:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def release() -> None:
        trim(0)

    return release


release_freed_memory: Callable[[], None] = _load_trim()

# glibc's mallopt parameter for the most arenas (malloc.h: M_ARENA_MAX).
_M_ARENA_MAX = -8
MALLOC_ARENAS = 2


@functools.cache  # every stage's loader calls it; once is enough
def limit_malloc_arenas(count: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``count`` (see above); True when set.

    glibc fixes its cap the first time a process goes past 8 arenas, so this must run
    before many threads have allocated: model loading calls it first. A
    ``MALLOC_ARENA_MAX`` in the environment is the operator's choice and is kept.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc: nothing to do
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, count))
