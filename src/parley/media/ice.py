"""ICE configuration for WebRTC calls: servers from config, loopback host candidates, consent checks.

No ICE servers by default: same-host and LAN peers connect with host and
peer-reflexive candidates, and aiortc would otherwise use Google's public STUN
server. Deployments across networks list STUN/TURN URLs (``PARLEY_ICE_SERVERS``);
TURN credentials go inline: ``turn:user:secret@host:3478?transport=udp``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Callable

import aioice.ice
import aioice.stun
from aiortc import RTCIceServer

log = logging.getLogger(__name__)

LOOPBACK_V4 = "127.0.0.1"
# RFC 7675: consent to send expires when no answer to a consent check has come back for 30 s.
CONSENT_EXPIRY_S = 30.0
# aioice's own checks, before patient_consent_checks() replaces them (the regression test compares).
AIOICE_QUERY_CONSENT = aioice.ice.Connection.query_consent


def ice_servers(urls: list[str]) -> list[RTCIceServer]:
    return [ice_server(url) for url in urls]


def ice_server(url: str) -> RTCIceServer:
    scheme, _, rest = url.strip().partition(":")
    if "@" in rest and scheme in ("turn", "turns"):
        credentials, _, address = rest.rpartition("@")
        username, _, credential = credentials.partition(":")
        return RTCIceServer(
            urls=f"{scheme}:{address}", username=username or None, credential=credential or None
        )
    return RTCIceServer(urls=url.strip())


def allow_loopback_candidates() -> None:
    """Make aioice offer 127.0.0.1 as a host candidate, in addition to the usual ones.

    aioice skips loopback addresses when gathering, so two peers on one host
    connect only through a real interface, and in a loopback-only network
    namespace (CI) not at all. The extra candidate is harmless for remote
    peers. ``get_host_addresses`` is private aioice API (pinned in pyproject);
    patching it is idempotent.
    """
    current = getattr(aioice.ice, "get_host_addresses", None)
    if current is None:  # aioice changed its internals: same-host peers fall back to real interfaces
        log.warning("aioice has no get_host_addresses; 127.0.0.1 will not be offered as a candidate")
        return
    if getattr(current, "_parley_loopback", False):
        return
    aioice.ice.get_host_addresses = _with_loopback(current)  # type: ignore[assignment]


def _with_loopback(gather: Callable[[bool, bool], list[str]]) -> Callable[[bool, bool], list[str]]:
    @functools.wraps(gather)
    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        addresses = list(gather(use_ipv4, use_ipv6))
        if use_ipv4 and LOOPBACK_V4 not in addresses:
            addresses.append(LOOPBACK_V4)
        return addresses

    get_host_addresses._parley_loopback = True  # type: ignore[attr-defined]
    return get_host_addresses


def patient_consent_checks() -> None:
    """Make aioice's consent freshness checks (RFC 7675) wait for late answers.

    aioice 0.13 sends a STUN request every 4–6 s, gives up on it after 0.5 s
    without retransmitting, and closes the ICE connection after six misses in a
    row. An answer that is merely late counts as a miss: every datagram of a call
    (RTP, data channel, STUN) shares one UDP socket, and asyncio reads one
    datagram per socket per loop iteration, so under sustained data-channel
    floods on a busy loop, answers came back 0.5–4 s late through the socket
    queues and live calls were closed (``parley bench fuzz``; aioice issue #58).
    The loop itself was not stalled (lag under 0.3 s). Here a check
    retransmits as RFC 5389 says and its answer counts whenever it comes; the
    connection closes only after ``CONSENT_EXPIRY_S`` without any answer, so a
    peer that vanished is still noticed within about 30 s. ``query_consent``
    and the attributes it uses are private aioice API (pinned in pyproject);
    patching is idempotent.
    """
    connection = aioice.ice.Connection
    current = getattr(connection, "query_consent", None)
    if current is None or not all(hasattr(connection, name) for name in ("build_request", "close")):
        # aioice changed its internals: keep its own checks
        log.warning("aioice's consent checks changed; calls under heavy load may be closed early")
        return
    if getattr(current, "_parley_patient", False):
        return
    connection.query_consent = _query_consent  # type: ignore[method-assign]


async def _query_consent(self: aioice.ice.Connection) -> None:
    assert self.remote_password is not None  # set before connect() starts the checks
    integrity_key = self.remote_password.encode("utf8")
    loop = asyncio.get_running_loop()
    answered = loop.time()
    while True:
        await asyncio.sleep(aioice.ice.CONSENT_INTERVAL * (0.8 + 0.4 * random.random()))
        for pair in list(self._nominated.values()):
            request = self.build_request(pair, nominate=False)
            # Wait, retransmitting, for as long as consent still holds (at least one RTO).
            patience = max(answered + CONSENT_EXPIRY_S - loop.time(), aioice.stun.RETRY_RTO)
            try:
                async with asyncio.timeout(patience):
                    await pair.protocol.request(request, pair.remote_addr, integrity_key=integrity_key)
            except (aioice.stun.TransactionError, TimeoutError):
                continue
            answered = loop.time()
        if loop.time() - answered >= CONSENT_EXPIRY_S:
            log.info("ICE consent expired: no answer to consent checks for %.0f s", CONSENT_EXPIRY_S)
            self._query_consent_task = None  # close() must not cancel the task running it
            await self.close()
            return


_query_consent._parley_patient = True  # type: ignore[attr-defined]
