"""Network namespaces on one machine, joined by veth pairs on a bridge: a small LAN for multi-node tests.

Each namespace is held by a ``sleep`` started with ``unshare -n`` (nothing is
named under /run/netns, so nothing outlives the test): killing the holder
destroys the namespace, its veth ends and, with them, their peers. Processes
run inside a namespace through ``nsenter --net=/proc/<holder>/ns/net``.

Layout: a hub namespace holds the bridge (``10.77.0.1/24``); the test's own
namespace and every node get a veth into it. The test must run in a
namespace of its own (``unshare -n``, as ``make test`` does): one veth end
stays there, and the host's network must not be touched.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

SUBNET = "10.77.0"
HUB_ADDRESS = f"{SUBNET}.1"
TEST_ADDRESS = f"{SUBNET}.100"
TOOLS = ("ip", "unshare", "nsenter")


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it if the test process dies (a crashed run leaves nothing)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class NamespacesUnavailable(Exception):
    """Why this machine or this process cannot build the namespaces (the test is skipped)."""


def why_unavailable(extra_tools: tuple[str, ...] = ()) -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    missing = [t for t in (*TOOLS, *extra_tools) if shutil.which(t) is None]
    if missing:
        return f"missing tools: {', '.join(missing)}"
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=False).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in links.splitlines() if ":" in line]
    if any(name != "lo" for name in names):
        return (
            "run inside a fresh network namespace (`unshare -n`, as make test does): this test adds a "
            f"veth to its own namespace, and this one has {', '.join(n for n in names if n != 'lo')}"
        )
    return None


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NamespacesUnavailable(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")


@dataclass
class Namespace:
    name: str
    holder: subprocess.Popen[bytes]
    address: str | None = None

    @property
    def path(self) -> str:
        return f"/proc/{self.holder.pid}/ns/net"

    def argv(self, *command: str) -> list[str]:
        """``command`` run inside this namespace."""
        return ["nsenter", f"--net={self.path}", "--", *command]

    def run(self, *command: str) -> None:
        _run(*self.argv(*command))

    def spawn(
        self, *command: str, env: dict[str, str] | None = None, **kwargs: Any
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.argv(*command), env=env, preexec_fn=_die_with_parent, **kwargs)


@dataclass
class Lan:
    """The hub (bridge) namespace plus one namespace per node; the test's namespace is on it too."""

    hub: Namespace | None = None
    nodes: dict[str, Namespace] = field(default_factory=dict)
    _links: int = 0

    def start(self) -> None:
        self.hub = self._namespace("hub")
        self.hub.run("ip", "link", "set", "lo", "up")
        self.hub.run("ip", "link", "add", "br0", "type", "bridge")
        self.hub.run("ip", "addr", "add", f"{HUB_ADDRESS}/24", "dev", "br0")
        self.hub.run("ip", "link", "set", "br0", "up")
        # The test's own end: it reaches the balancer and, for WebRTC media, the nodes.
        mine = self._cable()
        _run("ip", "addr", "add", f"{TEST_ADDRESS}/24", "dev", mine)
        _run("ip", "link", "set", mine, "up")

    def add_node(self, name: str, host: int) -> Namespace:
        ns = self._namespace(name)
        ns.address = f"{SUBNET}.{host}"
        end = self._cable()
        _run("ip", "link", "set", end, "netns", str(ns.holder.pid))
        ns.run("ip", "link", "set", "lo", "up")
        ns.run("ip", "addr", "add", f"{ns.address}/24", "dev", end)
        ns.run("ip", "link", "set", end, "up")
        self.nodes[name] = ns
        return ns

    def _namespace(self, name: str) -> Namespace:
        try:
            holder = subprocess.Popen(
                ["unshare", "-n", "sleep", "3600"], stderr=subprocess.PIPE, preexec_fn=_die_with_parent
            )
        except OSError as exc:
            raise NamespacesUnavailable(f"unshare: {exc}") from None
        # The holder is in its namespace once /proc shows a different one from ours.
        mine = os.readlink("/proc/self/ns/net")
        for _ in range(200):
            if holder.poll() is not None:
                err = holder.stderr.read().decode() if holder.stderr else ""
                raise NamespacesUnavailable(f"unshare -n failed: {err.strip()}")
            try:
                if os.readlink(f"/proc/{holder.pid}/ns/net") != mine:
                    return Namespace(name, holder)
            except OSError:
                pass
            time.sleep(0.01)
        holder.kill()
        raise NamespacesUnavailable("unshare -n did not create a namespace")

    def _cable(self) -> str:
        """A veth pair whose far end is on the hub's bridge; returns the near end's name."""
        assert self.hub is not None
        self._links += 1
        near, far = f"plv{self._links}", f"plv{self._links}h"
        _run("ip", "link", "add", near, "type", "veth", "peer", "name", far)
        _run("ip", "link", "set", far, "netns", str(self.hub.holder.pid))
        self.hub.run("ip", "link", "set", far, "master", "br0")
        self.hub.run("ip", "link", "set", far, "up")
        return near

    def close(self) -> None:
        """Kill the holders: their namespaces, and every veth with an end in them, go away."""
        for ns in [*self.nodes.values(), *([self.hub] if self.hub else [])]:
            if ns.holder.poll() is None:
                ns.holder.send_signal(signal.SIGKILL)
            ns.holder.wait()
        self.nodes.clear()
        self.hub = None
