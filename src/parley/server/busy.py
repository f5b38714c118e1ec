"""An upstream that is busy or draining, as ``parley serve`` passes it on: 503, ``Retry-After``, "busy, retry in n s".

The engine refuses a session beyond its capacity with ``503`` and
``Retry-After`` (see host/admission.py). Relayed as any other 5xx it would
become a ``502 upstream_error`` and lose the wait; this keeps both, and puts
the wait in the message the page shows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

log = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER = 5


@dataclass(frozen=True)
class Busy:
    message: str
    code: str
    retry_after: int

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


def upstream_busy(response: httpx.Response, message: str | None, code: str | None) -> Busy | None:
    """The upstream's 503 with ``Retry-After`` as a :class:`Busy`, or None for any other answer."""
    if response.status_code != 503 or not response.headers.get("retry-after"):
        return None
    try:
        retry_after = max(1, int(float(response.headers["retry-after"])))
    except ValueError:  # an HTTP date: rare, and a few seconds is as good a guess
        retry_after = DEFAULT_RETRY_AFTER
    text = message or "the realtime upstream is at capacity."
    if "retry in" not in text.lower():  # Parley's engine says it already; other servers may not
        text = f"Busy, retry in {retry_after} s: {text}"
    busy = Busy(text, code or "upstream_busy", retry_after)
    log.warning("upstream busy (%s): retry in %d s", busy.code, retry_after)
    return busy
