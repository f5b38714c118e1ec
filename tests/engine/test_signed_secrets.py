"""Signed ek_ secrets: minted on one node, accepted by every node sharing the node key, no shared state.

Two engines in this process, each on its own port with its own runtime (no
store in common): a secret minted on A opens a session on B with the minted
config; replays, tampering, expiry and a foreign key are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets

from parley.host.app import create_engine_app
from parley.host.auth import SecretStore
from parley.server.config import ServerConfig
from parley.server.mint import build_session
from parley.server.tools import default_registry
from tests.support.serve import fake_runtime
from tests.support.servers import RunningServer, serve_app

KEY = "engine-key-for-tests"
NODE_KEY = "a-shared-node-key-0123456789"


@contextlib.asynccontextmanager
async def node(node_key: str | None = NODE_KEY) -> AsyncIterator[RunningServer]:
    runtime = fake_runtime(api_key=KEY, node_key=node_key)
    async with serve_app(create_engine_app(runtime)) as server:
        server.runtime = runtime  # type: ignore[attr-defined]
        yield server


async def mint(srv: RunningServer, session: dict[str, Any] | None = None) -> str:
    async with httpx.AsyncClient(base_url=srv.http) as http:
        r = await http.post(
            "/v1/realtime/client_secrets",
            headers={"Authorization": f"Bearer {KEY}"},
            json={"session": session or {"type": "realtime", "instructions": "Speak like a pirate."}},
        )
    assert r.status_code == 200, r.text
    return str(r.json()["value"])


async def open_session(srv: RunningServer, secret: str) -> dict[str, Any]:
    """session.created for a WebSocket opened with ``secret`` (raises InvalidStatus when refused)."""
    async with websockets.connect(
        f"{srv.ws}/v1/realtime", additional_headers={"Authorization": f"Bearer {secret}"}
    ) as ws:
        async with asyncio.timeout(5):
            while True:
                event = json.loads(await ws.recv())
                if event["type"] == "session.created":
                    return dict(event["session"])


async def refused(srv: RunningServer, secret: str) -> int:
    with pytest.raises(websockets.InvalidStatus) as info:
        await open_session(srv, secret)
    return info.value.response.status_code


async def test_a_secret_minted_on_one_node_opens_a_session_on_another() -> None:
    async with node() as a, node() as b:
        secret = await mint(a)
        session = await open_session(b, secret)  # B never saw it minted
        assert session["instructions"] == "Speak like a pirate."
        assert await refused(b, secret) == 401  # single use on a node
        # Single use is per node (no shared state): A has not seen it used yet. Documented.
        assert (await open_session(a, secret))["instructions"] == "Speak like a pirate."
        assert await refused(a, secret) == 401


async def test_forged_tampered_expired_and_foreign_secrets_are_refused() -> None:
    async with (
        node() as a,
        node() as b,
        node(node_key="another-cluster-key-000000") as other,
        node(None) as alone,
    ):
        secret = await mint(a)
        payload, mac = secret.removeprefix("ek_").rsplit(".", 1)
        flipped = payload[:-3] + ("A" if payload[-3] != "A" else "B") + payload[-2:]
        assert await refused(b, f"ek_{flipped}.{mac}") == 401  # tampered payload
        assert await refused(b, f"ek_{payload}.{'A' * len(mac)}") == 401  # forged signature
        assert await refused(b, "ek_" + "x" * 40) == 401  # an old-style random secret
        assert await refused(other, secret) == 401  # another cluster's key
        assert await refused(alone, secret) == 401  # a node without the key trusts only its own
        alone_secret = await mint(alone)
        assert await refused(a, alone_secret) == 401
        assert (await open_session(alone, alone_secret))["type"] == "realtime"
        # Expiry holds on every node: an hour later the secret is refused everywhere.
        fresh = await mint(a)
        for srv in (a, b):
            srv.runtime.secrets.clock = lambda: time.time() + 3600  # type: ignore[attr-defined]
            assert await refused(srv, fresh) == 401


def test_secret_expiry_and_size() -> None:
    store = SecretStore(NODE_KEY)
    other = SecretStore(NODE_KEY)
    secret = store.mint(60, {"type": "realtime"})
    found = other.get(secret.value)
    assert (
        found is not None and found.session == {"type": "realtime"} and found.expires_at == secret.expires_at
    )
    other.clock = lambda: time.time() + 61
    assert other.get(secret.value) is None
    # What `parley serve` mints (page settings plus the server tools) stays a modest header.
    session = build_session(
        {"session": {"instructions": "Be brief. " * 40}}, ServerConfig(), default_registry()
    )
    big = store.mint(60, session)
    assert len(big.value) < 4096, len(big.value)
    print(f"ek_ secret for serve's default session with tools: {len(big.value)} characters")
