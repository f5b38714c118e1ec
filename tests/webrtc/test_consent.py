"""ICE consent checks under a slow receive path: late answers must not close a live connection.

Two real aioice connections on loopback; every datagram reaching one of them is
held back as if it waited in a busy socket queue (``parley bench fuzz`` measured
0.5–4 s there under data-channel floods). Times are scaled down: checks every
0.1 s, a 0.05 s STUN RTO, consent expiring after 1.5 s, answers 0.3 s late.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aioice.ice
import aioice.stun
import pytest

from parley.media import ice
from parley.media.ice import allow_loopback_candidates, patient_consent_checks

DELAY_S = 0.3


@pytest.fixture
def fast_consent(monkeypatch: pytest.MonkeyPatch) -> None:
    allow_loopback_candidates()  # a loopback-only namespace has no other address
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.1)
    monkeypatch.setattr(aioice.stun, "RETRY_RTO", 0.05)
    monkeypatch.setattr(ice, "CONSENT_EXPIRY_S", 1.5)


@contextlib.asynccontextmanager
async def connected_pair() -> AsyncIterator[tuple[aioice.ice.Connection, aioice.ice.Connection]]:
    a = aioice.ice.Connection(ice_controlling=True, use_ipv6=False)
    b = aioice.ice.Connection(ice_controlling=False, use_ipv6=False)
    try:
        await asyncio.gather(a.gather_candidates(), b.gather_candidates())
        for local, remote in ((a, b), (b, a)):
            for candidate in remote.local_candidates:
                await local.add_remote_candidate(candidate)
            await local.add_remote_candidate(None)
            local.remote_username, local.remote_password = remote.local_username, remote.local_password
        await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 10)
        yield a, b
    finally:
        await asyncio.gather(a.close(), b.close())


def hold_back_arrivals(connection: aioice.ice.Connection, delay: float | None) -> None:
    """Deliver every datagram reaching ``connection`` ``delay`` s late (None: never)."""
    loop = asyncio.get_running_loop()
    for protocol in connection._protocols:
        deliver = protocol.datagram_received

        def late(data: Any, addr: Any, deliver: Any = deliver) -> None:
            if delay is not None:
                loop.call_later(delay, deliver, data, addr)

        protocol.datagram_received = late  # type: ignore[method-assign]


async def closed_within(connection: aioice.ice.Connection, seconds: float) -> bool:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while (event := await connection.get_event()) is not None:
                if isinstance(event, aioice.ice.ConnectionClosed):
                    return True
            return True
    return False


async def test_aioice_alone_closes_a_live_connection_whose_answers_are_late(
    fast_consent: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bug: aioice 0.13 waits 0.5 s (one RTO) per check and closes after six misses."""
    monkeypatch.setattr(aioice.ice.Connection, "query_consent", ice.AIOICE_QUERY_CONSENT)
    async with connected_pair() as (a, _b):
        hold_back_arrivals(a, DELAY_S)
        assert await closed_within(a, 3.0), "aioice kept the connection: its checks changed, recheck ice.py"


async def test_late_answers_keep_the_connection(fast_consent: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice.Connection, "query_consent", ice.AIOICE_QUERY_CONSENT)
    patient_consent_checks()
    async with connected_pair() as (a, b):
        hold_back_arrivals(a, DELAY_S)
        assert not await closed_within(a, 3.0)  # twice the expiry, ~25 checks answered late
        await a.send(b"still here")
        assert await asyncio.wait_for(b.recv(), 2) == b"still here"


async def test_a_vanished_peer_still_expires(fast_consent: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice.Connection, "query_consent", ice.AIOICE_QUERY_CONSENT)
    patient_consent_checks()
    async with connected_pair() as (a, _b):
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        hold_back_arrivals(a, None)
        assert await closed_within(a, 5.0)
        # Not after six missed RTOs (~0.9 s) as aioice alone would, and not much after the expiry.
        assert 1.5 - 0.25 <= loop.time() - t0 < 1.5 + 1.0
