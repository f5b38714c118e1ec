"""``parley bench soak``: many sessions holding turns for a long time, and what grows.

An engine runs in this process (fake models by default; ``--real`` loads the
local models) behind uvicorn on loopback. ``--sessions`` WebSocket sessions
each hold text turns back to back (a new session every ``--turns-per-session``
turns, so sessions also come and go) for ``--minutes``. Every few seconds the
process's resident memory, open file descriptors, threads and asyncio tasks are
sampled. Reported: each one's least-squares slope per minute (after the first
tenth of the run, which is warm-up), their values after every session closed,
and turn latency in the first and the last window (five minutes, or a third of
a shorter run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from parley.bench.fake_models import FakeModels
from parley.bench.fuzz import Tally as _Tally
from parley.bench.fuzz import WsLink, _free_port, _probe, rss_mb
from parley.bench.stats import summary
from parley.engine.config import EngineConfig
from parley.host.app import create_engine_app
from parley.host.runtime import EngineRuntime


def sample() -> dict[str, float]:
    return {
        "rss_mb": rss_mb(),
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": threading.active_count(),
        "tasks": len(asyncio.all_tasks()),
    }


def slope_per_minute(times: list[float], values: list[float]) -> float:
    if len(times) < 3:
        return 0.0
    return float(np.polyfit(np.array(times) / 60.0, np.array(values), 1)[0])


async def _session_loop(
    url: str,
    stop: asyncio.Event,
    per_session: int,
    turns: list[tuple[float, float]],
    failures: list[str],
    t0: float,
) -> None:
    while not stop.is_set():
        link = WsLink(_Tally())
        await link.open(url)
        for n in range(1, per_session + 1):
            if stop.is_set():
                break
            started = time.perf_counter()
            failed = await _probe(link, n, turn=True)
            if failed:
                failures.append(failed)
            else:
                turns.append((started - t0, (time.perf_counter() - started) * 1000))
        await link.close()


async def soak(
    sessions: int = 20, minutes: float = 30.0, per_session: int = 20, real: bool = False, every_s: float = 5.0
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
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_engine_app(runtime),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            ws_ping_interval=None,
            http=deadline_http_protocol(),
            lifespan="on",
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.02)
    url = f"ws://127.0.0.1:{port}/v1/realtime"
    baseline = sample()
    stop = asyncio.Event()
    turns: list[tuple[float, float]] = []
    failures: list[str] = []
    samples: list[tuple[float, dict[str, float]]] = []
    t0 = time.perf_counter()
    loops = [
        asyncio.create_task(_session_loop(url, stop, per_session, turns, failures, t0))
        for _ in range(sessions)
    ]
    duration = minutes * 60
    while (elapsed := time.perf_counter() - t0) < duration:
        samples.append((elapsed, sample()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), min(every_s, duration - elapsed))
    stop.set()
    await asyncio.gather(*loops, return_exceptions=True)
    # Closing handshakes and session teardown finish in their own tasks: give them up to 10 s
    # (a busy machine) to come back to the baseline before reading what is left.
    settle = time.perf_counter() + 10
    while True:
        gc.collect()
        after = sample()
        settled = all(after[k] <= baseline[k] for k in ("fds", "threads", "tasks"))
        if settled or time.perf_counter() > settle:
            break
        await asyncio.sleep(0.2)
    open_sessions = len(runtime.sessions)
    server.should_exit = True
    with contextlib.suppress(Exception):
        await asyncio.wait_for(serving, 15)

    warm = duration / 10
    kept = [(t, s) for t, s in samples if t >= warm] or samples
    slopes = {
        key: round(slope_per_minute([t for t, _ in kept], [s[key] for _, s in kept]), 3)
        for key in ("rss_mb", "fds", "threads", "tasks")
    }
    window = min(300.0, duration / 3)
    first = [ms for t, ms in turns if t < window]
    last = [ms for t, ms in turns if t >= duration - window]
    return {
        "engine": "real models" if real else "fake models",
        "sessions": sessions,
        "minutes": minutes,
        "turns": len(turns),
        "failed_turns": len(failures),
        "failures": failures[:10],
        "slopes_per_minute": slopes,
        "baseline": baseline,
        "peak": {k: max(s[k] for _, s in samples) for k in baseline} if samples else {},
        "after_close": after,
        "open_sessions_after": open_sessions,
        "window_s": window,
        "first_window_turn_ms": summary(first) if first else None,
        "last_window_turn_ms": summary(last) if last else None,
    }


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument(
        "--turns-per-session", type=int, default=20, help="turns before a session is replaced"
    )
    parser.add_argument("--real", action="store_true", help="load the local models instead of fakes")
    parser.add_argument("--out", type=Path, default=Path("bench/results/soak.json"))


def run(args: argparse.Namespace) -> int:
    report = asyncio.run(soak(args.sessions, args.minutes, args.turns_per_session, args.real))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"parley bench soak — {report['sessions']} sessions, {report['minutes']} min, {report['engine']}: "
        f"{report['turns']} turns, {report['failed_turns']} failed"
    )
    print(f"  slopes per minute (after warm-up): {report['slopes_per_minute']}")
    print(f"  baseline {report['baseline']} · after every session closed {report['after_close']}")
    for name in ("first", "last"):
        s = report[f"{name}_window_turn_ms"]
        if s:
            print(
                f"  {name} {report['window_s']:.0f} s: turn p50 {s['p50']:.0f} ms, p95 {s['p95']:.0f} ms (n={s['n']})"
            )
    print(f"  written to {args.out}")
    return 0 if report["failed_turns"] == 0 and report["open_sessions_after"] == 0 else 1
