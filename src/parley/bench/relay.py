"""``parley bench relay``: what the WebSocket relay of ``parley serve`` adds, per event, under load.

N concurrent sessions stream 20 ms audio chunks at real-time pace, first
straight to an upstream, then through the relay to the same upstream. The
upstream is a minimal protocol echo server (it answers every
``input_audio_buffer.append`` with a ``response.output_audio.delta`` of the
same size), because real models cannot serve 100 sessions on 2 cores; the
relay in between is the real one: ``create_app`` + ``RemoteUpstream`` +
``relay_websocket`` with the server tools enabled, in its own process under
uvicorn, exactly as ``parley serve --upstream`` runs it.

Each event carries timestamps from ``time.monotonic()`` (CLOCK_MONOTONIC is
shared by all processes of a machine), so both directions are measured one
way: client → upstream ("up") and upstream → client ("down"). The relay's
added latency is the relayed percentile minus the direct one. CPU and memory
per session are the relay process's, from psutil.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parley.bench.stats import percentile
from parley.server.cli import run_loop

CHUNK_MS = 20
AUDIO_B64 = base64.b64encode(bytes(48 * CHUNK_MS)).decode()  # 20 ms of 24 kHz PCM16
_APPEND_PREFIX = '{"type":"input_audio_buffer.append",'
_DELTA_PREFIX = (
    '{"type":"response.output_audio.delta","response_id":"resp_bench","item_id":"item_bench",'
    '"output_index":0,"content_index":0,'
)
_STAMP = '"bench":'
# Offered as browsers offer it, so the relay is measured as a page meets it; the echo server
# and the relay must both decline it (a session that negotiates it counts as an error).
CLIENT_COMPRESSION: str | None = "deflate"
_STAMPS = '"bench":['


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def summary_ms(values: list[float]) -> dict[str, Any]:
    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 3)

    return {
        "n": len(values),
        "p50_ms": ms(percentile(values, 0.5)),
        "p99_ms": ms(percentile(values, 0.99)),
        "max_ms": ms(max(values) if values else None),
    }


# --- the upstream: a minimal Realtime echo server ---------------------------------------------


async def _echo_upstream(port: int) -> None:
    import websockets
    from websockets.asyncio.server import ServerConnection
    from websockets.frames import Frame, Opcode
    from websockets.protocol import State

    from parley.server.frames import server_text_frame

    def event_id() -> str:
        return f"event_{time.monotonic_ns()}"

    class EchoConnection(ServerConnection):
        """Answers each event inside the read callback: no task switch per event, so the echo
        server costs as little CPU as it can on the cores it shares with the relay."""

        session: dict[str, Any] | None = None

        def process_event(self, event: Any) -> None:
            if (
                self.session is None
                or not isinstance(event, Frame)
                or event.opcode is not Opcode.TEXT
                or not event.fin
                or self.protocol.state is not State.OPEN
            ):
                super().process_event(event)
                return
            received = time.monotonic()
            message = event.data.decode()  # type: ignore[union-attr]  # a text frame's data is bytes
            if message.startswith(_APPEND_PREFIX):
                # String surgery instead of JSON: the load generator must cost far less than the relay.
                stamp = message[message.rindex(_STAMP) + len(_STAMP) : -1]
                self.reply(
                    f'{_DELTA_PREFIX}"event_id":"{event_id()}","delta":"{AUDIO_B64}",'
                    f'"bench":[{stamp},{received!r},{time.monotonic()!r}]}}'
                )
                return
            update = json.loads(message)
            if update.get("type") == "session.update":
                self.session.update({k: v for k, v in (update.get("session") or {}).items() if k != "type"})
                self.reply(
                    json.dumps({"type": "session.updated", "event_id": event_id(), "session": self.session})
                )

        def reply(self, text: str) -> None:
            self.transport.write(server_text_frame(text))

    async def handle(ws: Any) -> None:
        session: dict[str, Any] = {
            "type": "realtime",
            "object": "realtime.session",
            "id": "sess_bench",
            "model": "gpt-realtime",
            "tools": [],
            "tool_choice": "auto",
        }
        await ws.send(json.dumps({"type": "session.created", "event_id": event_id(), "session": session}))
        ws.session = session  # from here on, events are answered in EchoConnection.process_event
        await ws.wait_closed()

    async with websockets.serve(
        handle,
        "127.0.0.1",
        port,
        max_size=2**24,
        compression=None,
        ping_interval=None,
        create_connection=EchoConnection,
    ):
        await asyncio.Future()


# --- the relay: parley serve's app against that upstream ---------------------------------------


async def _relay(port: int, upstream_port: int) -> None:
    from parley.server.app import create_app
    from parley.server.cli import run_server
    from parley.server.config import ServerConfig
    from parley.server.upstream import RemoteUpstream

    url = f"http://127.0.0.1:{upstream_port}/v1"
    config = ServerConfig(
        port=port,
        upstream_url=url,
        upstream_key="bench-key",
        max_relay_sessions=100_000,
        max_sessions_per_client=100_000,
    )
    upstream = RemoteUpstream(url, config.upstream_key, config.upstream_kind, config.max_message_bytes)
    app = create_app(config, upstream)
    # serve's own server settings (WebSocket protocol, no permessage-deflate, …), not a copy of them.
    await run_server(app, config, lifespan="on")


# --- the client ------------------------------------------------------------------------------


@dataclass
class Latencies:
    up: list[float] = field(default_factory=list)
    down: list[float] = field(default_factory=list)
    round_trip: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sent: int = 0
    received: int = 0


async def _open(url: str, measure_from: float, out: Latencies) -> Any:
    """One client session, its events' timestamps read inside the socket's read callback."""
    import websockets

    from parley.server.frames import RemoteSocket

    sock = RemoteSocket()
    try:
        conn = await websockets.connect(
            url,
            max_size=2**24,
            compression=CLIENT_COMPRESSION,
            ping_interval=None,
            open_timeout=60,
            create_connection=sock.connection_factory,  # type: ignore[arg-type]  # a factory stands in for the class
        )
        sock.opened(conn)
        if CLIENT_COMPRESSION and conn.response and conn.response.headers.get("Sec-WebSocket-Extensions"):
            raise RuntimeError("the server accepted permessage-deflate")
        created = json.loads(await sock.recv())
        assert created["type"] == "session.created", created
    except Exception as exc:
        out.errors.append(f"{type(exc).__name__}: {exc}")
        await sock.close()
        return None

    def on_event(message: str) -> None:
        now = time.monotonic()
        at = message.rfind(_STAMPS)
        if at < 0:
            return
        sent, received, replied = (float(x) for x in message[at + len(_STAMPS) : -2].split(","))
        out.received += 1
        if sent >= measure_from:
            out.up.append(received - sent)
            out.down.append(now - replied)
            out.round_trip.append(now - sent)

    sock.attach(on_event)
    return sock


async def _load(url: str, sessions: int, warmup: float, seconds: float) -> Latencies:
    from parley.server.asgi_ws import WebSocketClosed

    loop = asyncio.get_running_loop()
    out = Latencies()
    mono_offset = time.monotonic() - loop.time()
    # Every connection is open before the first chunk (measure_from is in monotonic time).
    opening = 2.0 + sessions * 0.01
    measure_from = loop.time() + opening + warmup + mono_offset
    socks = await asyncio.gather(*(_open(url, measure_from, out) for _ in range(sessions)))
    t0 = measure_from - warmup - mono_offset
    stop_at = t0 + warmup + seconds
    # Each session sends every CHUNK_MS, the sessions spread over that period (1 ms slots: the
    # event loop's timer resolution) like independent microphones. One ticker sends each slot's
    # chunks: a task per session would wake the load generator 50 times a second per session.
    slots: list[list[Any]] = [[] for _ in range(CHUNK_MS)]
    for i, sock in enumerate(socks):
        if sock is not None:
            slots[i * CHUNK_MS // sessions].append(sock)
    await asyncio.sleep(max(0.0, t0 - loop.time()))
    tick = 0
    while t0 + tick / 1000 < stop_at:
        slot = slots[tick % CHUNK_MS]
        for sock in list(slot):
            try:
                sock.send_now(f'{_APPEND_PREFIX}"audio":"{AUDIO_B64}",{_STAMP}{time.monotonic()!r}}}')
                out.sent += 1
            except WebSocketClosed as exc:
                out.errors.append(f"WebSocketClosed: {exc}")
                slot.remove(sock)
        tick += 1
        # Late ticks are sent at once, not skipped: every session sends all its chunks.
        await asyncio.sleep(max(0.0, t0 + tick / 1000 - loop.time()))
    await asyncio.sleep(0.3)  # the last echoes
    await asyncio.gather(*(sock.close() for sock in socks if sock is not None))
    return out


def _spawn(role: str, *args: str) -> subprocess.Popen[bytes]:
    # stderr to a file, not a pipe nobody reads: a full pipe would block the helper mid-run.
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", "parley.bench.relay", "--role", role, *args],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    proc.log = log  # type: ignore[attr-defined]
    return proc


def _wait_port(port: int, proc: subprocess.Popen[bytes], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = proc.log  # type: ignore[attr-defined]
            log.seek(0)
            raise RuntimeError(f"helper process exited: {log.read().decode(errors='replace')[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


def _cpu_seconds(procs: dict[str, Any]) -> dict[str, Any]:
    """CPU seconds so far of each bench process, and of every other process by pid."""
    import psutil

    seconds: dict[str, Any] = {}
    for name, proc in procs.items():
        times = proc.cpu_times()
        seconds[name] = times.user + times.system
    ours = {proc.pid for proc in procs.values()}
    others: dict[int, float] = {}
    for proc in psutil.process_iter():
        if proc.pid not in ours:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                others[proc.pid] = times.user + times.system
    seconds["others"] = others
    return seconds


def _phase(
    args: argparse.Namespace, url: str, procs: dict[str, Any]
) -> tuple[Latencies, dict[str, float], float, int]:
    """One load phase: (latencies, CPU seconds per process, wall seconds, relay RSS growth in bytes)."""
    relay_proc = procs["relay"]
    rss_before = relay_proc.memory_info().rss
    cpu_before = _cpu_seconds(procs)
    wall_before = time.monotonic()
    peak = [rss_before]

    async def sample() -> None:
        while True:
            peak[0] = max(peak[0], relay_proc.memory_info().rss)
            await asyncio.sleep(0.5)

    async def run() -> Latencies:
        sampler = asyncio.create_task(sample())
        try:
            return await _load(url, args.sessions, args.warmup, args.seconds)
        finally:
            sampler.cancel()

    lat = run_loop(run())
    cpu_after = _cpu_seconds(procs)
    cpu = {name: cpu_after[name] - cpu_before[name] for name in procs}
    # Other processes' CPU during the phase (one that started and ended within it is missed).
    before = cpu_before["others"]
    cpu["other_processes"] = sum(t - before.get(pid, 0.0) for pid, t in cpu_after["others"].items())
    return lat, cpu, time.monotonic() - wall_before, peak[0] - rss_before


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    import psutil

    up_port, relay_port = _free_port(), _free_port()
    upstream = _spawn("upstream", "--port", str(up_port))
    relay = _spawn("relay", "--port", str(relay_port), "--upstream-port", str(up_port))
    try:
        _wait_port(up_port, upstream)
        _wait_port(relay_port, relay)
        procs = {
            "relay": psutil.Process(relay.pid),
            "echo_upstream": psutil.Process(upstream.pid),
            "load_generator": psutil.Process(),
        }
        time.sleep(0.5)
        urls = {
            "direct": f"ws://127.0.0.1:{up_port}/v1/realtime",
            "relayed": f"ws://127.0.0.1:{relay_port}/api/realtime/ws",
        }
        pooled = {mode: Latencies() for mode in urls}
        cpu = {mode: dict.fromkeys([*procs, "other_processes"], 0.0) for mode in urls}
        wall = dict.fromkeys(urls, 0.0)
        rss = dict.fromkeys(urls, 0)
        # Alternate the two paths so a change in background load hits both alike.
        for _ in range(args.rounds):
            for mode, url in urls.items():
                lat, c, w, r = _phase(args, url, procs)
                into = pooled[mode]
                into.up += lat.up
                into.down += lat.down
                into.round_trip += lat.round_trip
                into.errors += lat.errors
                into.sent += lat.sent
                into.received += lat.received
                for name, seconds in c.items():
                    cpu[mode][name] += seconds
                wall[mode] += w
                rss[mode] = max(rss[mode], r)
                time.sleep(1.0)  # let the relay close the sessions before the next phase
        results: dict[str, Any] = {}
        for mode, lat in pooled.items():
            relayed_events = (lat.sent + lat.received) if mode == "relayed" else 0
            relay_cpu = cpu[mode]["relay"]
            percent = {name: round(100 * seconds / wall[mode], 1) for name, seconds in cpu[mode].items()}
            results[mode] = {
                "up": summary_ms(lat.up),
                "down": summary_ms(lat.down),
                "round_trip": summary_ms(lat.round_trip),
                "sent": lat.sent,
                "received": lat.received,
                "expected": int(args.rounds * args.sessions * (args.warmup + args.seconds) * 1000 / CHUNK_MS),
                "errors": lat.errors[:5],
                "error_count": len(lat.errors),
                "relay_cpu_percent": round(100 * relay_cpu / wall[mode], 1),
                "relay_cpu_percent_per_session": round(100 * relay_cpu / wall[mode] / args.sessions, 3),
                "relay_cpu_us_per_event": round(1e6 * relay_cpu / relayed_events, 1)
                if relayed_events
                else None,
                "relay_rss_mb_per_session": round(rss[mode] / args.sessions / 2**20, 3),
                # Percent of one CPU over the phases (the machine has os.cpu_count() of them); other
                # processes' share says whether something else competed for the cores meanwhile.
                "cpu_percent": percent,
            }
        results["relay_rss_mb"] = round(procs["relay"].memory_info().rss / 2**20, 1)
        return results
    finally:
        for proc in (relay, upstream):
            proc.terminate()
        for proc in (relay, upstream):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _added(results: dict[str, Any]) -> dict[str, Any]:
    added: dict[str, Any] = {}
    for direction in ("up", "down", "round_trip"):
        d, r = results["direct"][direction], results["relayed"][direction]
        added[direction] = {
            q: (None if d[q] is None or r[q] is None else round(r[q] - d[q], 3)) for q in ("p50_ms", "p99_ms")
        }
    return added


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=int, default=100, help="concurrent sessions (default 100)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured streaming time per phase")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured streaming before that")
    parser.add_argument("--rounds", type=int, default=2, help="alternating direct/relayed rounds (default 2)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/relay.json"))


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"Relay benchmark: {args.sessions} sessions × {CHUNK_MS} ms audio chunks at real-time pace, "
        f"{args.seconds:.0f} s measured. Upstream: a minimal protocol echo server (not the models); "
        "relay: parley serve's WebSocket relay (server tools on) in its own process."
    )
    load_before = os.getloadavg()
    results = _measure(args)
    report = {
        "benchmark": "relay",
        "note": "upstream is a minimal Realtime echo server, not real models; the relay is parley serve's own "
        "code path (create_app + RemoteUpstream) under uvicorn in a separate process",
        "sessions": args.sessions,
        "chunk_ms": CHUNK_MS,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            # The machine may be shared: a high load average makes every tail figure worse.
            "load_average_before": [round(x, 2) for x in load_before],
        },
        **results,
        "added": _added(results),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))

    table = Table(title=f"relay vs direct, {args.sessions} sessions (ms)")
    for col in ("path", "direction", "p50", "p99", "max"):
        table.add_column(col)
    for mode in ("direct", "relayed"):
        for direction in ("up", "down", "round_trip"):
            s = results[mode][direction]
            table.add_row(mode, direction, str(s["p50_ms"]), str(s["p99_ms"]), str(s["max_ms"]))
    for direction, a in report["added"].items():
        table.add_row("added by relay", direction, str(a["p50_ms"]), str(a["p99_ms"]), "")
    console.print(table)
    r = results["relayed"]
    console.print(
        f"relay process: {r['relay_cpu_percent']}% CPU ({r['relay_cpu_percent_per_session']}% per "
        f"session, {r['relay_cpu_us_per_event']} µs per relayed event), "
        f"{r['relay_rss_mb_per_session']} MB per session; errors: "
        f"{results['direct']['error_count']} direct, {r['error_count']} relayed"
    )
    for mode in ("direct", "relayed"):
        console.print(
            f"CPU during the {mode} phases (% of one CPU): "
            + ", ".join(
                f"{name.replace('_', ' ')} {value}" for name, value in results[mode]["cpu_percent"].items()
            )
        )
    console.print(
        f"load average before the run: {' '.join(f'{x:.2f}' for x in load_before)} on "
        f"{os.cpu_count()} CPUs (other work on the machine inflates the tails)"
    )
    console.print(f"wrote {args.out}")
    return 0 if not (results["direct"]["error_count"] or r["error_count"]) else 1


def _main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=["upstream", "relay"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-port", type=int)
    args = parser.parse_args()
    if args.role == "upstream":
        run_loop(_echo_upstream(args.port))
    else:
        run_loop(_relay(args.port, args.upstream_port))  # the loop `parley serve` runs on


if __name__ == "__main__":
    _main()
