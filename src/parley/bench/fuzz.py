"""``parley bench fuzz``: hostile client events against a running engine, and what survived.

An engine runs in this process (fake models by default, so the protocol
handling is what is measured; ``--real`` loads the local models) behind
uvicorn on loopback. ``--sessions`` sessions (a share of them WebRTC calls,
the rest WebSockets) each send a seeded stream of hostile frames (see
:mod:`parley.bench.fuzz_events`) while a bystander session holds ordinary text
turns. Every ``--probe-every`` frames a session proves it still answers (an
``input_audio_buffer.clear`` must come back ``cleared``), and every tenth probe
it completes a text turn. Counted:

* sessions dropped (their connection closed under them) and probes that failed;
* ``error`` events by code, and how many were ``server_error`` (a handler that
  crashed instead of naming what was wrong);
* records at ERROR level or with a traceback in the engine's log;
* resident memory at the start, peak and end, and the bystander's turn times.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets

from parley.bench.fake_models import FakeModels
from parley.bench.fuzz_events import Fuzzer
from parley.bench.stats import summary
from parley.engine.config import EngineConfig
from parley.host.app import create_engine_app
from parley.host.runtime import EngineRuntime

PROBE_TIMEOUT_S = 20.0
RTC_MAX_MESSAGE = 256 * 1024  # the data channel's message size limit (a=max-message-size)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class LogTally(logging.Handler):
    """Counts what the engine logged at ERROR or with a traceback, keeping the first few."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.errors = 0
        self.tracebacks = 0
        self.samples: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.ERROR and not record.exc_info:
            return
        self.errors += record.levelno >= logging.ERROR
        self.tracebacks += bool(record.exc_info)
        if len(self.samples) < 10:
            self.samples.append(self.format(record)[:2000])


@dataclass
class Tally:
    frames: int = 0
    by_family: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    events: int = 0
    dropped: int = 0
    drop_reasons: list[str] = field(default_factory=list)
    probes: int = 0
    probes_failed: int = 0
    turns: int = 0
    turns_failed: int = 0
    failures: list[str] = field(default_factory=list)


class Link:
    """One fuzzed session's connection: frames out, events in (WebSocket or WebRTC data channel)."""

    kind = "?"

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.closed = asyncio.Event()

    def on_event(self, event: dict[str, Any]) -> None:
        self.tally.events += 1
        kind = event.get("type")
        if kind == "error":
            err = event.get("error") or {}
            self.tally.errors[str(err.get("code"))] += 1
            key = f"error:{err.get('event_id')}"
        elif kind == "response.done":
            key = f"done:{((event.get('response') or {}).get('metadata') or {}).get('probe')}"
        elif kind == "input_audio_buffer.cleared":
            key = "cleared"
        else:
            return
        fut = self.waiters.get(key)
        if fut is not None and not fut.done():
            fut.set_result(event)

    def expect(self, key: str) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiters[key] = fut
        return fut

    async def send(self, frame: str | bytes) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class WsLink(Link):
    kind = "websocket"

    async def open(self, url: str) -> None:
        self.ws = await websockets.connect(url, max_size=None, open_timeout=20)
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                self.on_event(json.loads(message))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()

    async def send(self, frame: str | bytes) -> None:
        await self.ws.send(frame)

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(Exception):
            await self.reader


class RtcLink(Link):
    kind = "webrtc"

    async def open(self, url: str) -> None:
        from parley.bench.webrtc_peer import RealtimePeer

        self.peer = RealtimePeer(on_event=self.on_event)
        await self.peer.connect(url)
        await self.peer.wait_open(20)
        assert self.peer.channel is not None
        self.peer.channel.on("close", self.closed.set)
        self.drained = asyncio.Event()
        self.peer.channel.bufferedAmountLowThreshold = 1 << 18
        self.peer.channel.on("bufferedamountlow", self.drained.set)
        self.peer.channel.on("close", self.drained.set)

    async def send(self, frame: str | bytes) -> None:
        assert self.peer.channel is not None
        if self.peer.channel.readyState != "open":
            raise ConnectionError("data channel closed")
        if len(frame) > RTC_MAX_MESSAGE:
            # SCTP refuses a message over the size the engine advertised, before it is sent
            # (browsers too): such frames only test the WebSocket path.
            frame = frame[:RTC_MAX_MESSAGE]
        self.peer.channel.send(frame)
        self.peer.events.clear()  # the peer keeps every event; the tally is enough here
        # SCTP queues without back-pressure: wait for the buffer to drain below its low mark.
        if self.peer.channel.bufferedAmount > 1 << 20:
            self.drained.clear()
            await self.drained.wait()

    async def close(self) -> None:
        await self.peer.close()


async def _probe(link: Link, n: int, turn: bool) -> str | None:
    """None when the session answered; else what went wrong."""
    cleared = link.expect("cleared")
    await link.send(json.dumps({"type": "input_audio_buffer.clear"}))
    try:
        await asyncio.wait_for(cleared, PROBE_TIMEOUT_S)
    except TimeoutError:
        return "no input_audio_buffer.cleared"
    if not turn:
        return None
    for attempt in range(10):
        event_id = f"probe_{n}_{attempt}"
        done = link.expect(f"done:{n}")
        refused = link.expect(f"error:{event_id}")
        await link.send(json.dumps({"type": "response.cancel"}))
        await link.send(
            json.dumps(
                {
                    "type": "response.create",
                    "event_id": event_id,
                    "response": {
                        "conversation": "none",
                        "output_modalities": ["text"],
                        "metadata": {"probe": str(n)},
                        "instructions": "Answer in one sentence.",
                        "input": [
                            {
                                "type": "message",
                                "role": "user",
                                "content": [{"type": "input_text", "text": "What is the capital of France?"}],
                            }
                        ],
                    },
                }
            )
        )
        finished, _ = await asyncio.wait(
            {done, refused}, timeout=PROBE_TIMEOUT_S, return_when="FIRST_COMPLETED"
        )
        if done in finished:
            status = done.result()["response"]["status"]
            return None if status in ("completed", "incomplete") else f"probe turn ended {status}"
        if refused in finished:
            await asyncio.sleep(0.05)  # e.g. a flood's response still active: cancel and try again
            continue
        return "probe turn timed out"
    return "probe turn refused 10 times"


async def _fuzz_session(make_link: Any, fuzzer: Fuzzer, frames: int, probe_every: int, tally: Tally) -> None:
    link: Link = await make_link()
    sent = 0
    probes = 0
    while sent < frames:
        frame, family = fuzzer.next()
        try:
            await link.send(frame)
        except Exception as exc:
            link.closed.set()
            reason = f"{link.kind}: send failed: {exc}"
        else:
            reason = ""
            sent += 1
            tally.frames += 1
            tally.by_family[family] += 1
        if not link.closed.is_set() and sent % probe_every == 0:
            probes += 1
            tally.probes += 1
            failed = await _probe(link, probes, turn=probes % 10 == 0)
            tally.turns += probes % 10 == 0
            if failed:
                tally.probes_failed += 1
                tally.turns_failed += probes % 10 == 0 and "turn" in failed
                tally.failures.append(f"{link.kind} after {sent} frames: {failed}")
        if link.closed.is_set():
            tally.dropped += 1
            tally.drop_reasons.append(reason or f"{link.kind}: closed after {sent} frames")
            with contextlib.suppress(Exception):
                await link.close()
            link = await make_link()
        await asyncio.sleep(0)  # let the engine and the other sessions run
    with contextlib.suppress(Exception):
        await link.close()


async def _bystander(url: str, stop: asyncio.Event, tally: Tally) -> list[float]:
    """An ordinary session holding text turns while the others fuzz: the server must keep serving it."""
    link = WsLink(Tally())
    await link.open(url)
    times: list[float] = []
    n = 0
    while not stop.is_set():
        n += 1
        t0 = time.perf_counter()
        failed = await _probe(link, n, turn=True)
        if failed:
            tally.failures.append(f"bystander: {failed}")
            tally.turns_failed += 1
        else:
            times.append((time.perf_counter() - t0) * 1000)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    await link.close()
    return times


async def fuzz(
    events: int = 2000,
    sessions: int = 4,
    webrtc: int = 1,
    seed: int = 1,
    probe_every: int = 50,
    real: bool = False,
) -> dict[str, Any]:
    import uvicorn

    from parley.host.deadlines import deadline_http_protocol

    if real:
        from parley.engine.models.registry import load_models

        models: Any = await load_models(EngineConfig().models)
    else:
        models = FakeModels()
    config = EngineConfig(validate_events=True, max_sessions=sessions + 4)
    runtime = EngineRuntime(config, models=models)
    app = create_engine_app(runtime)
    sock_port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=sock_port,
            log_level="warning",
            ws_max_size=2 * config.max_message_bytes,
            ws_ping_interval=None,
            http=deadline_http_protocol(),
            lifespan="on",
        )
    )
    logs = LogTally()
    root = logging.getLogger()
    root.addHandler(logs)
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.02)
    ws_url = f"ws://127.0.0.1:{sock_port}/v1/realtime"
    calls_url = f"http://127.0.0.1:{sock_port}/v1/realtime/calls"
    tally = Tally()
    rss_start = rss_mb()
    peak = rss_start
    stop = asyncio.Event()

    async def sample_memory() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss_mb())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    t0 = time.perf_counter()
    try:
        sampler = asyncio.create_task(sample_memory())
        bystander = asyncio.create_task(_bystander(ws_url, stop, tally))
        per_session = max(1, events // sessions)
        jobs = []
        for i in range(sessions):
            rtc = i < webrtc

            async def make_link(rtc: bool = rtc) -> Link:
                link: Link
                if rtc:
                    link = RtcLink(tally)
                    await link.open(calls_url)  # type: ignore[attr-defined]
                else:
                    link = WsLink(tally)
                    await link.open(ws_url)  # type: ignore[attr-defined]
                return link

            jobs.append(_fuzz_session(make_link, Fuzzer(seed * 1000 + i), per_session, probe_every, tally))
        await asyncio.gather(*jobs)
        stop.set()
        bystander_ms = await bystander
        await sampler
    finally:
        stop.set()
        elapsed = time.perf_counter() - t0
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serving, 15)
        root.removeHandler(logs)
    gc.collect()
    rss_end = rss_mb()
    return {
        "engine": "real models" if real else "fake models",
        "seed": seed,
        "sessions": sessions,
        "webrtc_sessions": webrtc,
        "frames_sent": tally.frames,
        "frames_by_family": dict(tally.by_family),
        "events_received": tally.events,
        "seconds": round(elapsed, 1),
        "sessions_dropped": tally.dropped,
        "drop_reasons": tally.drop_reasons[:10],
        "probes": tally.probes,
        "probes_failed": tally.probes_failed,
        "probe_turns": tally.turns,
        "failures": tally.failures[:10],
        "errors_by_code": dict(tally.errors.most_common()),
        "server_errors": tally.errors.get("server_error", 0),
        "log_errors": logs.errors,
        "log_tracebacks": logs.tracebacks,
        "log_samples": logs.samples,
        "bystander_turns": len(bystander_ms) if "bystander_ms" in locals() else 0,
        "bystander_turn_ms": summary(bystander_ms) if "bystander_ms" in locals() and bystander_ms else None,
        # The end is after every session closed and a collection: what the engine still holds, plus
        # what the allocator keeps of freed memory (the 1 MiB strings) without giving it back.
        "rss_mb": {"start": round(rss_start, 1), "peak": round(peak, 1), "end": round(rss_end, 1)},
        "open_sessions_after": len(runtime.sessions),
        "open_calls_after": len(runtime.calls),
    }


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def passed(report: dict[str, Any]) -> bool:
    return (
        report["sessions_dropped"] == 0
        and report["probes_failed"] == 0
        and report["server_errors"] == 0
        and report["log_errors"] == 0
        and report["log_tracebacks"] == 0
    )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--events", type=int, default=100_000, help="hostile frames in all (100,000)")
    parser.add_argument("--sessions", type=int, default=8, help="fuzzed sessions at once (8)")
    parser.add_argument("--webrtc", type=int, default=1, help="how many of them are WebRTC calls (1)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--probe-every", type=int, default=50, help="frames between liveness probes (50)")
    parser.add_argument("--real", action="store_true", help="load the local models instead of fakes")
    parser.add_argument("--out", type=Path, default=Path("bench/results/fuzz.json"))


def run(args: argparse.Namespace) -> int:
    report = asyncio.run(
        fuzz(args.events, args.sessions, args.webrtc, args.seed, args.probe_every, args.real)
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"parley bench fuzz — {report['frames_sent']} hostile frames, {report['sessions']} sessions "
        f"({report['webrtc_sessions']} WebRTC), {report['engine']}, seed {report['seed']}, {report['seconds']} s"
    )
    print(
        f"  sessions dropped {report['sessions_dropped']} · probes failed {report['probes_failed']}/"
        f"{report['probes']} · server_error events {report['server_errors']} · log errors "
        f"{report['log_errors']} · tracebacks {report['log_tracebacks']}"
    )
    print(f"  bystander turns {report['bystander_turns']} · RSS MB {report['rss_mb']}")
    print(f"  error codes: {report['errors_by_code']}")
    for line in report["log_samples"][:3] + report["failures"][:3] + report["drop_reasons"][:3]:
        print("  ! " + line.splitlines()[0][:300])
    print(f"  {'PASS' if passed(report) else 'FAIL'} · written to {args.out}")
    return 0 if passed(report) else 1
