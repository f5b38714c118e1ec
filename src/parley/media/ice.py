"""ICE configuration for WebRTC calls: servers from config, loopback host candidates.

No ICE servers by default: same-host and LAN peers connect with host and
peer-reflexive candidates, and aiortc would otherwise use Google's public STUN
server. Deployments across networks list STUN/TURN URLs (``PARLEY_ICE_SERVERS``);
TURN credentials go inline: ``turn:user:secret@host:3478?transport=udp``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import aioice.ice
from aiortc import RTCIceServer

log = logging.getLogger(__name__)

LOOPBACK_V4 = "127.0.0.1"


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
