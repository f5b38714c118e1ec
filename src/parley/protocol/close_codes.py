"""WebSocket close codes Parley sends, chosen for what clients do with them.

openai-python (``openai.types.websocket_reconnection.is_recoverable_close``)
reconnects after 1001, 1011, 1012 and 1013 and gives up after the others;
Parley's terminal client and page follow the same split. So a session that
simply ran out of time says "going away" (reconnect), a client that broke a
rule hears "policy" or "too big" (reconnecting would only repeat it), and an
engine that cannot keep up says "try again later".
"""

from __future__ import annotations

NORMAL = 1000
GOING_AWAY = 1001  # the session reached its maximum duration; the server is shutting down
POLICY = 1008  # authentication, origin or another rule refused the client
TOO_BIG = 1009  # a message over the transport's size limit
INTERNAL = 1011
OVERLOADED = 1013  # at the session limit, or a client too slow to read its events

# Codes after which a client should not reconnect on its own: the same request would fail again.
FATAL = frozenset({1002, 1003, 1007, POLICY, TOO_BIG, 1010})


def should_reconnect(code: int | None) -> bool:
    """Whether a client that lost its socket with ``code`` (None: no close frame) should try again."""
    return code is None or code not in FATAL
