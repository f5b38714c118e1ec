"""Data-channel sends racing a closing connection: expected, so not an unhandled error.

aiortc 1.16 hands every ``RTCDataChannel.send`` to a background task
(``RTCSctpTransport._data_channel_flush``, started with ``ensure_future`` and
never awaited). When the ICE or DTLS transport below has just closed (the peer
vanished, consent expired, the call is being torn down), that task fails with
``ConnectionError`` and asyncio logs "Task exception was never retrieved" with
a traceback: ``parley bench fuzz`` saw 1–11 of them per run with WebRTC callers
dropping. Nothing is lost that could still be delivered (the association is
gone), and the call's own teardown already reports the closed connection, so
the error is logged at debug level instead. ``_data_channel_flush`` is private
aiortc API (pinned in pyproject); patching is idempotent.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from aiortc.rtcsctptransport import RTCSctpTransport

log = logging.getLogger(__name__)

# aiortc's own flush, before quiet_closed_flushes() wraps it (the regression test compares).
AIORTC_DATA_CHANNEL_FLUSH = getattr(RTCSctpTransport, "_data_channel_flush", None)

Flush = Callable[[RTCSctpTransport], Coroutine[Any, Any, None]]


def quiet_closed_flushes() -> None:
    """Log a data-channel flush that fails on a closed connection at debug level."""
    current = getattr(RTCSctpTransport, "_data_channel_flush", None)
    if current is None:
        log.warning("aiortc's data-channel flush changed; closing calls may log task errors")
        return
    if getattr(current, "_parley_quiet", False):
        return
    RTCSctpTransport._data_channel_flush = _quiet(current)  # type: ignore[method-assign,assignment]


def _quiet(flush: Flush) -> Flush:
    @functools.wraps(flush)
    async def quiet_flush(self: RTCSctpTransport) -> None:
        try:
            await flush(self)
        except ConnectionError as exc:
            log.debug("data channel message not sent, the connection is closed: %s", exc)

    quiet_flush._parley_quiet = True  # type: ignore[attr-defined]
    return quiet_flush
