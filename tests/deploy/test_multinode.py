"""Two session nodes behind HAProxy on one machine, in network namespaces joined by veth pairs.

The topology (tests/support/netns.py): a hub namespace with a bridge and
HAProxy running ``deploy/haproxy.cfg`` as shipped; two node namespaces, each
running a session node (``parley engine``'s serving path on the fake models:
CPU here is for the hosting, not for models); the test's own namespace on the
same bridge, as the clients. Checked, with real sockets all the way:

* sessions opened through HAProxy spread over both nodes within ±10 %;
* an ``ek_`` secret minted on one node opens a session on the other;
* a WebRTC call set up through HAProxy gets an answer with the node's own
  candidates, and its media and events go straight to that node;
* killing a node loses only its own sessions, and new sessions succeed on the
  other within 1 s;
* a SIGTERM-drained node gets no new sessions, finishes the ones it has and exits 0.

Needs root and a fresh network namespace (``make test`` runs the suite under
``unshare -n``); skipped with the reason otherwise. The figures (split,
failover time, drain) are printed and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from parley.bench.webrtc_peer import RealtimePeer
from tests.engine.test_admission import recv, text_turn
from tests.support.netns import HUB_ADDRESS, Lan, Namespace, NamespacesUnavailable, why_unavailable

pytestmark = [pytest.mark.slow]
log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
HAPROXY_CFG = ROOT / "deploy" / "haproxy.cfg"
KEY = "multinode-engine-key"
NODE_KEY = "multinode-shared-node-key-0123456789"
PORT, AGENT_PORT = 8765, 8766
LB = f"{HUB_ADDRESS}:8080"
STATS = f"{HUB_ADDRESS}:8404"
AUTH = {"Authorization": f"Bearer {KEY}"}
SPREAD_SESSIONS = 40
DRAIN_SECONDS = 15.0


@dataclass
class Node:
    name: str
    ns: Namespace
    logs: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"http://{self.ns.address}:{PORT}"

    @property
    def ws(self) -> str:
        return f"ws://{self.ns.address}:{PORT}"

    def start(self) -> None:
        env = {**os.environ, "PARLEY_NODE_KEY": NODE_KEY, "PARLEY_NODE_ID": self.name}
        with self.logs.open("ab") as out:
            self.proc = self.ns.spawn(
                sys.executable,
                "-m",
                "parley.bench.fake_engine",
                "--host",
                str(self.ns.address),
                "--port",
                str(PORT),
                "--api-key",
                KEY,
                "--agent-port",
                str(AGENT_PORT),
                "--max-sessions",
                "200",
                "--drain-seconds",
                str(DRAIN_SECONDS),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=out,
            )

    async def ready(self, timeout: float = 30.0) -> None:
        async with httpx.AsyncClient() as http, asyncio.timeout(timeout):
            while True:
                assert self.proc is not None and self.proc.poll() is None, self.logs.read_text()[-2000:]
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.http}/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Session:
    ws: Any
    node: str


@dataclass
class Cluster:
    lan: Lan
    nodes: dict[str, Node]
    haproxy: subprocess.Popen[bytes]
    figures: dict[str, Any] = field(default_factory=dict)

    async def servers(self) -> dict[str, str]:
        """HAProxy's view of each node: status (UP, DOWN, DRAIN, …) and weight."""
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://{STATS}/stats;csv")).text
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {
            row["svname"]: f"{row['status']} w{row['weight']}"
            for row in rows
            if row["pxname"] == "parley_nodes" and row["svname"] in self.nodes
        }

    async def wait_servers(self, want: dict[str, str], timeout: float = 15.0) -> float:
        """Seconds until each named node's HAProxy status starts with ``want[name]``."""
        t0 = time.perf_counter()
        seen: dict[str, str] = {}
        try:
            async with asyncio.timeout(timeout):
                while True:
                    assert self.haproxy.poll() is None, "HAProxy exited (see haproxy.log)"
                    with contextlib.suppress(httpx.HTTPError):
                        seen = await self.servers()
                        if all(seen.get(n, "").startswith(s) for n, s in want.items()):
                            return time.perf_counter() - t0
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"HAProxy never showed {want}; last {seen}") from None


async def open_session(url: str = f"ws://{LB}", headers: dict[str, str] | None = None) -> Session:
    ws = await websockets.connect(f"{url}/v1/realtime", additional_headers=headers or AUTH, open_timeout=3)
    node = ws.response.headers.get("x-parley-node", "?") if ws.response else "?"
    await recv(ws, "session.created")
    return Session(ws, node)


async def is_open(session: Session) -> bool:
    try:
        pong = await session.ws.ping()
        await asyncio.wait_for(pong, 2)
        return True
    except (websockets.ConnectionClosed, TimeoutError):
        return False


@contextlib.asynccontextmanager
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    reason = why_unavailable(("haproxy",))
    if reason:
        pytest.skip(reason)
    lan = Lan()
    nodes: dict[str, Node] = {}
    haproxy: subprocess.Popen[bytes] | None = None
    try:
        try:
            lan.start()
            for name, host in (("node1", 11), ("node2", 12)):
                nodes[name] = Node(name, lan.add_node(name, host), tmp_path / f"{name}.log")
        except NamespacesUnavailable as exc:
            pytest.skip(f"network namespaces unavailable here: {exc}")
        for node in nodes.values():
            node.start()
        assert lan.hub is not None
        env = {
            **os.environ,
            "PARLEY_LB_BIND": LB,
            "PARLEY_LB_STATS": STATS,
            "PARLEY_NODE1": f"{nodes['node1'].ns.address}:{PORT}",
            "PARLEY_NODE2": f"{nodes['node2'].ns.address}:{PORT}",
            "PARLEY_AGENT_PORT": str(AGENT_PORT),
        }
        with (tmp_path / "haproxy.log").open("ab") as out:
            haproxy = lan.hub.spawn("haproxy", "-f", str(HAPROXY_CFG), "-db", env=env, stdout=out, stderr=out)
        await asyncio.gather(*(node.ready() for node in nodes.values()))
        c = Cluster(lan, nodes, haproxy)
        await c.wait_servers({"node1": "UP w100", "node2": "UP w100"})
        yield c
    finally:
        if haproxy is not None and haproxy.poll() is None:
            haproxy.kill()
            haproxy.wait()
        for node in nodes.values():
            node.stop()
        lan.close()


def candidate_addresses(sdp: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) ", sdp, re.M)}


async def test_two_session_nodes_behind_haproxy(tmp_path: Path) -> None:
    t_test = time.perf_counter()
    async with cluster(tmp_path) as c:
        n1, n2 = c.nodes["node1"], c.nodes["node2"]
        sessions: list[Session] = []
        try:
            # 1. Spread: sessions opened one after another through HAProxy land on both nodes.
            for _ in range(SPREAD_SESSIONS):
                sessions.append(await open_session())
            split = Counter(s.node for s in sessions)
            async with httpx.AsyncClient() as http:
                counted = {n.name: (await http.get(f"{n.http}/readyz")).json()["sessions"] for n in (n1, n2)}
            assert counted == {"node1": split["node1"], "node2": split["node2"]}, (counted, split)
            c.figures["split"] = dict(split)
            assert abs(split["node1"] / SPREAD_SESSIONS - 0.5) <= 0.10, split

            # 2. A secret minted on node1 opens a session on node2 (signed with the shared node key).
            async with httpx.AsyncClient() as http:
                r = await http.post(
                    f"{n1.http}/v1/realtime/client_secrets",
                    headers=AUTH,
                    json={"session": {"type": "realtime", "instructions": "Minted on node1."}},
                )
            secret = r.json()["value"]
            on_node2 = await open_session(n2.ws, {"Authorization": f"Bearer {secret}"})
            assert on_node2.node == "node2"
            await on_node2.ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime"}}))
            assert (await recv(on_node2.ws, "session.updated"))["session"][
                "instructions"
            ] == "Minted on node1."
            await on_node2.ws.close()

            # 3. WebRTC through HAProxy: the answer carries the node's own candidate; the call runs there.
            peer = RealtimePeer()
            try:
                await peer.connect(f"http://{LB}/v1/realtime/calls", KEY)
                answered = candidate_addresses(peer.pc.remoteDescription.sdp)
                assert answered and answered <= {n1.ns.address, n2.ns.address}, answered
                await peer.wait_open()
                await peer.wait_for("session.created")
                c.figures["webrtc_answer_candidates"] = sorted(answered)
            finally:
                await peer.close()

            # 4. Kill node1: only its sessions are lost; new sessions succeed on node2 within 1 s.
            assert n1.proc is not None
            t_kill = time.perf_counter()
            n1.proc.send_signal(signal.SIGKILL)
            attempts: list[tuple[float, str]] = []
            while sum(1 for _, node in attempts if node == "node2") < 10:
                t = time.perf_counter() - t_kill
                assert t < 10, attempts
                try:
                    s = await open_session()
                    sessions.append(s)
                    attempts.append((t, s.node))
                except (OSError, TimeoutError, websockets.InvalidStatus, websockets.ConnectionClosed) as exc:
                    attempts.append((t, f"failed: {exc!r}"))
                    await asyncio.sleep(0.02)
            first_ok = next(t for t, node in attempts if node == "node2")
            failed = [a for a in attempts if a[1].startswith("failed")]
            c.figures["failover"] = {
                "first_new_session_s": round(first_ok, 3),
                "failed_attempts": [f"{t:.3f} s {what}" for t, what in failed],
            }
            assert first_ok <= 1.0, attempts
            assert all(node == "node2" for _, node in attempts if not node.startswith("failed")), attempts
            originals = sessions[:SPREAD_SESSIONS]
            alive = await asyncio.gather(*(is_open(s) for s in originals))
            lost = [s.node for s, ok in zip(originals, alive, strict=True) if not ok]
            assert Counter(lost) == Counter({"node1": split["node1"]}), Counter(lost)
            c.figures["failover"]["lost_sessions"] = len(lost)
            await c.wait_servers({"node1": "DOWN"})  # (new sessions did not need to wait for this)
            c.figures["failover"]["haproxy_marked_down_s"] = round(time.perf_counter() - t_kill, 2)
            survivors = [s for s in sessions if s.node == "node2"]
            for s in survivors[:3]:
                assert "Paris" in await text_turn(s.ws)
            for s in [s for s in sessions if s.node == "node1"]:
                await s.ws.close()
            sessions = survivors

            # 5. node1 comes back; HAProxy takes it in again.
            n1.start()
            await n1.ready()
            await c.wait_servers({"node1": "UP", "node2": "UP"})

            # 6. Drain node2: no new sessions for it, its own finish, then it exits 0.
            assert n2.proc is not None
            t_term = time.perf_counter()
            n2.proc.send_signal(signal.SIGTERM)
            c.figures["drain"] = {"haproxy_stopped_sending_s": round(await c.wait_servers({"node2": "D"}), 3)}
            newcomers = [await open_session() for _ in range(10)]
            assert {s.node for s in newcomers} == {"node1"}, [s.node for s in newcomers]
            for s in sessions[:3]:
                assert "Paris" in await text_turn(s.ws)  # a draining node's sessions go on working
            assert n2.proc.poll() is None, "the node must wait for its sessions"
            for s in sessions:
                await s.ws.close()  # the conversations end
            sessions = newcomers
            async with asyncio.timeout(DRAIN_SECONDS):
                while n2.proc.poll() is None:  # noqa: ASYNC110 - another process
                    await asyncio.sleep(0.05)
            c.figures["drain"]["exited_s"] = round(time.perf_counter() - t_term, 2)
            assert n2.proc.returncode == 0, n2.logs.read_text()[-2000:]
            assert c.figures["drain"]["exited_s"] < DRAIN_SECONDS  # finished, not cut at the bound
        finally:
            for s in sessions:
                with contextlib.suppress(Exception):
                    await s.ws.close()
    c.figures["test_s"] = round(time.perf_counter() - t_test, 1)
    log.warning("multi-node figures: %s", json.dumps(c.figures))
    print(f"multi-node figures: {json.dumps(c.figures)}")
