"""The changes every Parley WebRTC peer (the engine, ``parley talk``, the benchmarks' peer) makes to
aiortc and aioice, installed together so that no peer has one without the other. Idempotent."""

from __future__ import annotations

from parley.media.ice import patient_consent_checks
from parley.media.sctp import quiet_closed_flushes


def steady_calls() -> None:
    patient_consent_checks()  # a consent answer late under load is not a vanished peer (ice.py)
    quiet_closed_flushes()  # a send racing a closing call is not an unhandled error (sctp.py)
