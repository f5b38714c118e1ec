"""``parley bench soak``: many sessions holding turns for a long time, and what grows.

An engine runs in this process (fake models by default; ``--real`` loads the
local models) behind uvicorn on loopback. ``--sessions`` WebSocket sessions
run for ``--minutes``. ``--spoken`` of them speak (``parley.bench.soak_spoken``:
synthesised questions streamed in real time with the page's session, replies
listened to, sometimes spoken over, a new session every
``--spoken-turns-per-session`` turns); the others hold text turns back to back
(a new session every ``--turns-per-session`` turns). So sessions connect, talk,
interrupt and leave all along. Every few seconds the process's resident memory,
open file descriptors, threads and asyncio tasks are sampled. Reported: each
one's least-squares slope per minute (after the first tenth of the run, which is
warm-up), their values after every session closed, and per kind (spoken, text)
turns, failures and turn latency in the first and the last window (five
minutes, or a third of a shorter run): text, request → ``response.done``;
spoken, the user's true end of speech → the reply's first audio delta. Spoken
barge-ins are counted with how each reply ended.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from parley.bench.fake_models import FakeModels
from parley.bench.fuzz import Tally as _Tally
from parley.bench.fuzz import WsLink, _free_port, _probe, rss_mb
from parley.bench.soak_spoken import KindTally, Voice, spoken_loop, warm_up
from parley.bench.stats import summary
from parley.engine.config import EngineConfig
from parley.host.app import create_engine_app
from parley.host.runtime import EngineRuntime
from parley.server.page_defaults import page_session


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
    tally: KindTally,
    t0: float,
    rounds: int | None = None,
) -> None:
    made = 0
    while not stop.is_set() and (rounds is None or made < rounds):
        made += 1
        link = WsLink(_Tally())
        await link.open(url)
        tally.sessions += 1
        for n in range(1, per_session + 1):
            if stop.is_set():
                break
            started = time.perf_counter()
            failed = await _probe(link, n, turn=True)
            if failed:
                tally.failures.append(failed)
            else:
                tally.turns.append((started - t0, (time.perf_counter() - started) * 1000))
        await link.close()


def _cpu_seconds() -> tuple[float, float]:
    """(this process's CPU seconds, the whole machine's busy CPU seconds) so far."""
    mine = os.times()
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return mine.user + mine.system, (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _rss_after_malloc_trim() -> float | None:
    """RSS once glibc has returned the heap it keeps after frees (None off glibc): what is
    left above the baseline then is memory still in use, or held by the models' own arenas."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return None
    return rss_mb()


def _slopes(samples: list[tuple[float, dict[str, float]]]) -> dict[str, float]:
    return {
        key: round(slope_per_minute([t for t, _ in samples], [s[key] for _, s in samples]), 3)
        for key in ("rss_mb", "fds", "threads", "tasks")
    }


def _kind_report(tally: KindTally, window: float, ran: float) -> dict[str, Any]:
    first = [ms for t, ms in tally.turns if t < window]
    last = [ms for t, ms in tally.turns if t >= ran - window]
    return {
        "sessions_opened": tally.sessions,
        "turns": len(tally.turns),
        "failed_turns": len(tally.failures),
        "failures": tally.failures[:10],
        "turn_ms": summary(ms for _, ms in tally.turns) if tally.turns else None,
        "first_window_turn_ms": summary(first) if first else None,
        "last_window_turn_ms": summary(last) if last else None,
    }


async def soak(
    sessions: int = 20,
    minutes: float = 30.0,
    per_session: int = 20,
    real: bool = False,
    every_s: float = 5.0,
    *,
    spoken: int = 0,
    spoken_per_session: int = 4,
    barge_in_share: float = 0.3,
    seed: int = 7,
    rounds: int | None = None,
    models: Any = None,
) -> dict[str, Any]:
    """The soak; ``rounds`` ends each session loop after that many sessions (the run ends
    when every loop has, or at ``minutes``); ``models`` are already loaded real models."""
    import uvicorn

    from parley.host.deadlines import deadline_http_protocol

    if sessions < 1 or not 0 <= spoken <= sessions:
        raise ValueError(f"--spoken {spoken}: between 0 and --sessions ({sessions})")
    if models is not None:
        real = True
    elif real:
        from parley.engine.models.registry import load_models

        models = await load_models(EngineConfig().models)
    else:
        models = FakeModels()
    # Synthesised once per run, before the baseline (Piper's own threads and memory stay).
    voice = await asyncio.to_thread(Voice.synthesise) if spoken else None
    if spoken:
        await warm_up(models)
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
    baseline_threads = [t.name for t in threading.enumerate()]
    stop = asyncio.Event()
    text, talk = KindTally(), KindTally()
    samples: list[tuple[float, dict[str, float]]] = []
    t0 = time.perf_counter()
    cpu0 = _cpu_seconds()
    loops = [
        asyncio.create_task(_session_loop(url, stop, per_session, text, t0, rounds))
        for _ in range(sessions - spoken)
    ]
    talkers = [
        asyncio.create_task(
            spoken_loop(
                url,
                voice,
                stop,
                spoken_per_session,
                barge_in_share,
                random.Random(seed + i),
                talk,
                t0,
                rounds=rounds,
            )
        )
        for i in range(spoken)
        if voice is not None
    ]
    duration = minutes * 60
    while (elapsed := time.perf_counter() - t0) < duration:
        samples.append((elapsed, sample()))
        _, running = await asyncio.wait([*loops, *talkers], timeout=min(every_s, duration - elapsed))
        if not running:
            break
    ran = time.perf_counter() - t0
    cpu1 = _cpu_seconds()
    stop.set()
    # A spoken turn in flight can take many seconds more: the user hangs up instead (its
    # session is closed mid-turn; not counted). Text loops finish their current turn.
    for task in talkers:
        task.cancel()
    await asyncio.gather(*loops, *talkers, return_exceptions=True)
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
    after_threads = [t.name for t in threading.enumerate()]
    trimmed = _rss_after_malloc_trim()
    open_sessions = len(runtime.sessions)
    server.should_exit = True
    with contextlib.suppress(Exception):
        await asyncio.wait_for(serving, 15)

    warm = ran / 10
    kept = [(t, s) for t, s in samples if t >= warm] or samples
    slopes = _slopes(kept)
    # Growth that levels off (allocator arenas, caches filling up to their bound) shows here as
    # a smaller slope than over the whole run; a leak keeps its slope.
    late = _slopes([(t, s) for t, s in samples if t >= ran / 2])
    window = min(300.0, ran / 3)
    kinds = {"text": _kind_report(text, window, ran)}
    if spoken:
        barges = talk.barge_ins
        kinds["spoken"] = _kind_report(talk, window, ran) | {
            "barge_ins": len(barges),
            "barge_ins_cancelled": sum(1 for b in barges if b["cancelled"]),
            # generation had already ended when the engine heard the user start: nothing to cancel
            "barge_ins_after_reply_finished": sum(1 for b in barges if b["finished_before_speech_started"]),
            "barge_ins_truncated": sum(1 for b in barges if b["truncated"]),
            "barge_in_rows": barges,
            "turn_rows": talk.rows,
        }
    return {
        "engine": "real models" if real else "fake models",
        "sessions": sessions,
        "spoken_sessions": spoken,
        "turn_detection": page_session()["audio"]["input"]["turn_detection"] if spoken else None,
        "minutes": minutes,
        "ran_s": round(ran, 1),
        # shares of all cores during the run: the soak's process (engine and clients), and the
        # rest of the machine (other work on a shared machine slows the turns too)
        "cpu_share": round((cpu1[0] - cpu0[0]) / ran / (os.cpu_count() or 1), 3),
        "cpu_share_other_processes": round(
            max(0.0, (cpu1[1] - cpu0[1]) - (cpu1[0] - cpu0[0])) / ran / (os.cpu_count() or 1), 3
        ),
        "turns": sum(k["turns"] for k in kinds.values()),
        "failed_turns": sum(k["failed_turns"] for k in kinds.values()),
        "failures": (text.failures + talk.failures)[:10],
        "slopes_per_minute": slopes,
        "slopes_per_minute_last_half": late,
        "baseline": baseline,
        "peak": {k: max(s[k] for _, s in samples) for k in baseline} if samples else {},
        "after_close": after,
        "rss_mb_after_malloc_trim": trimmed,
        # threads started during the run and still there: a pool that grew under load, or a leak
        "threads_new_after_close": sorted(set(after_threads) - set(baseline_threads)),
        "open_sessions_after": open_sessions,
        "window_s": window,
        # the text sessions' latency, as before spoken sessions joined (kinds has both)
        "first_window_turn_ms": kinds["text"]["first_window_turn_ms"],
        "last_window_turn_ms": kinds["text"]["last_window_turn_ms"],
        "kinds": kinds,
        "samples": [
            [round(t, 1), *(round(s[k], 1) for k in ("rss_mb", "fds", "threads", "tasks"))]
            for t, s in samples
        ],
        "samples_columns": ["s", "rss_mb", "fds", "threads", "tasks"],
    }


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument(
        "--turns-per-session", type=int, default=20, help="turns before a session is replaced"
    )
    parser.add_argument("--real", action="store_true", help="load the local models instead of fakes")
    parser.add_argument(
        "--spoken", type=int, default=0, help="how many of the sessions speak (real-time synthesised speech)"
    )
    parser.add_argument(
        "--spoken-turns-per-session", type=int, default=4, help="spoken turns before a session is replaced"
    )
    parser.add_argument(
        "--barge-in-share", type=float, default=0.3, help="share of spoken replies the user speaks over"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench/results/soak.json"))


def run(args: argparse.Namespace) -> int:
    report = asyncio.run(
        soak(
            args.sessions,
            args.minutes,
            args.turns_per_session,
            args.real,
            spoken=args.spoken,
            spoken_per_session=args.spoken_turns_per_session,
            barge_in_share=args.barge_in_share,
            seed=args.seed,
        )
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    spoken = f" ({report['spoken_sessions']} spoken)" if report["spoken_sessions"] else ""
    print(
        f"parley bench soak — {report['sessions']} sessions{spoken}, {report['minutes']} min, {report['engine']}: "
        f"{report['turns']} turns, {report['failed_turns']} failed"
    )
    print(
        f"  CPU (share of all cores): this process {report['cpu_share'] * 100:.0f} %, "
        f"other processes {report['cpu_share_other_processes'] * 100:.0f} %"
    )
    print(f"  slopes per minute (after warm-up): {report['slopes_per_minute']}")
    print(f"  slopes per minute (last half): {report['slopes_per_minute_last_half']}")
    new = (
        f" (new threads: {', '.join(report['threads_new_after_close'])})"
        if report["threads_new_after_close"]
        else ""
    )
    print(f"  baseline {report['baseline']} · after every session closed {report['after_close']}{new}")
    if report["rss_mb_after_malloc_trim"] is not None:
        print(f"  RSS after malloc_trim(0): {report['rss_mb_after_malloc_trim']:.0f} MB")
    for kind, k in report["kinds"].items():
        if not k["sessions_opened"]:
            continue
        line = f"  {kind}: {k['turns']} turns, {k['failed_turns']} failed, {k['sessions_opened']} sessions opened"
        if kind == "spoken":
            line += (
                f", barge-ins {k['barge_ins']} ({k['barge_ins_cancelled']} cancelled, "
                f"{k['barge_ins_after_reply_finished']} after the reply had finished; "
                f"{k['barge_ins_truncated']} truncated to what was heard)"
            )
        print(line)
        for name in ("first", "last"):
            s = k[f"{name}_window_turn_ms"]
            if s:
                print(
                    f"    {name} {report['window_s']:.0f} s: turn p50 {s['p50']:.0f} ms, p95 {s['p95']:.0f} ms (n={s['n']})"
                )
    print(f"  written to {args.out}")
    return 0 if report["failed_turns"] == 0 and report["open_sessions_after"] == 0 else 1
