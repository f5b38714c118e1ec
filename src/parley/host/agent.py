"""HAProxy's agent-check: a TCP port that answers with this node's weight.

``/readyz`` tells a balancer whether a node takes sessions at all; it cannot
tell HAProxy how loaded the node is, and HAProxy only learns weights from an
agent. WebRTC media goes straight to the node (the answer carries the node's
own candidates), so after the SDP POST the balancer sees nothing of a call:
connection counts alone (``balance leastconn``) would miss them. The agent
reports the free share of the node's session slots as a weight, so HAProxy
prefers the least loaded node for every kind of session:

* ``ready up 75%``  taking sessions, 3 of 4 slots free;
* ``ready up 1%``   full (it still gets a request when every node is full,
  and refuses it properly: 503 + ``Retry-After`` / 1013);
* ``drain``         draining or loading: no new sessions, running ones go on.

HAProxy: ``agent-check agent-port <PARLEY_AGENT_PORT> agent-inter 500ms``
(see deploy/haproxy.cfg).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def agent_line(load: dict[str, Any]) -> str:
    if load.get("status") in ("draining", "loading"):
        return "drain\n"
    capacity = max(1, int(load.get("capacity") or 1))
    free = max(0, int(load.get("free") or 0))
    weight = max(1, round(100 * free / capacity))
    return f"ready up {weight}%\n"


async def start_agent(host: str, port: int, load: Callable[[], dict[str, Any]]) -> asyncio.Server:
    """Serve the agent on ``host:port`` until the returned server is closed."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(agent_line(load()).encode("ascii"))
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    server = await asyncio.start_server(answer, host, port)
    log.info("HAProxy agent on %s:%d", host, port)
    return server
