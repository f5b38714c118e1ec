"""Give freed heap memory back to the OS.

Whisper's encoder on a long window, Piper on a long chunk and model loading
allocate hundreds of MB of short-lived buffers from several threads. glibc
keeps freed memory in per-thread arenas, so RSS ratchets up (measured: 1.03 GB
after a stress run vs 0.73 GB with a trim after each heavy step).
``malloc_trim(0)`` costs ~0.1 ms and is called only after such steps.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
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
