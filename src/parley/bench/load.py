"""``parley bench load``: how many spoken conversations one engine holds at once.

For each number of users N, a fresh ``parley serve`` (its embedded engine on the default
models, the web page's session, serve's tools: what users get) takes N simulated users at
once. Each user speaks synthesised questions in real time over its own WebSocket, listens
to the whole reply as a speaker would, thinks for a moment and asks again; now and then
it interrupts a reply and asks something else. Measured per N:

* true end of speech → first reply audio (p50/p95), the first turn of each fresh session
  also on its own;
* playback underruns: the reply is played from its first audio delta at real-time pace;
  whenever the next delta arrives after the audio before it has run out, the listener hears
  a gap (counted when over one 20 ms frame; total ms);
* sessions refused or failed, turns that got no reply, protocol errors;
* the server's CPU use (share of all cores) and peak RSS.

The capacity reported is the largest N whose p95 meets ``--target-ms`` with no underruns
and no failures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from parley.bench import profiles
from parley.bench.speech import silence, synthesize
from parley.bench.spoken_user import Events, until_spoken
from parley.bench.stats import summary
from parley.bench.turn import INTERRUPTIONS, QUESTIONS, Microphone, _free_port, _peak_rss_mb, engine_process

DEFAULT_OUT = Path("bench/results/load.json")


@dataclass
class UserResult:
    turns: list[dict[str, Any]] = field(default_factory=list)
    refused: bool = False
    failed: str | None = None
    errors: list[str] = field(default_factory=list)
    no_reply: int = 0


@dataclass
class UserScript:
    """What one simulated user says, and when: the same over either transport."""

    user: int
    turns: int
    questions: list[np.ndarray]
    interruptions: list[np.ndarray]
    rng: random.Random
    interrupt_share: float = 0.25
    reply_timeout: float = 30.0

    async def think(self) -> None:
        await asyncio.sleep(self.rng.uniform(1.0, 3.0))  # before the next question

    def question(self, n: int) -> np.ndarray:
        return np.concatenate([self.questions[(self.user * 7 + n) % len(self.questions)], silence(0.1)])

    def interrupts(self, n: int) -> bool:
        """Whether the user speaks over the reply to turn ``n`` (never the last one)."""
        return n + 1 < self.turns and self.rng.random() < self.interrupt_share

    def interruption(self, n: int) -> np.ndarray:
        return self.interruptions[(self.user + n) % len(self.interruptions)]


async def run_user(url: str, script: UserScript) -> UserResult:
    import websockets

    result = UserResult()
    try:
        ws = await websockets.connect(url, max_size=None, open_timeout=30)
    except websockets.InvalidStatus as exc:
        result.refused = exc.response.status_code in (429, 503)
        result.failed = f"HTTP {exc.response.status_code}"
        return result
    except (OSError, TimeoutError) as exc:
        result.failed = f"connect: {exc}"
        return result
    events = Events(ws, result.errors)
    reader = asyncio.create_task(events.read())
    mic = Microphone(ws)
    mic_task: asyncio.Task[None] | None = None
    try:
        _, _, first = await events.wait_for(lambda e: e["type"] in ("session.created", "error"), 0, 30)
        if first["type"] == "error":
            result.refused, result.failed = True, first["error"].get("message", "refused")
            return result
        session = profiles.session("ui", 500, tools=False)  # serve adds and runs its own tools
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        await events.wait_for(lambda e: e["type"] == "session.updated", 0, 30)
        mic_task = asyncio.create_task(mic.run())
        seen: set[str] = set()
        interrupted = False  # an interruption was just spoken: its reply is the next turn
        label = ""
        asked = 0  # index of the first event since the utterance was queued: replies come after it
        for n in range(script.turns):
            if not interrupted:
                await script.think()
                label = f"q{n}"
                asked = len(events.items)
                mic.say(script.question(n), label)
            interrupted = False
            await until_spoken(mic, label, end=True)
            speech_end = mic.sent_voice[label][1]
            try:
                t_audio, delta = await events.next_reply_audio(seen, asked, script.reply_timeout)
            except TimeoutError:
                result.no_reply += 1
                continue
            response_id = delta["response_id"]
            turn = turn_row(script, n, speech_end, t_audio, events.items[asked:])
            result.turns.append(turn)
            interrupt = script.interrupts(n)
            if interrupt:
                # Barge in about a second into the reply; what follows it is not heard.
                await asyncio.sleep(1.0)
                label = f"i{n}"
                asked = len(events.items)
                mic.say(script.interruption(n), label)
                interrupted = turn["interrupted"] = True
                await until_spoken(mic, label, end=False)
                onset = mic.sent_voice[label][0]
                play = events.playback[response_id]
                turn.update(play.report(), heard_s=onset - (play.started or onset))
                continue
            await events.wait_for(
                lambda e, rid=response_id: e["type"] == "response.done" and e["response"]["id"] == rid,
                asked,
                script.reply_timeout * 4,
            )
            play = events.playback[response_id]
            turn.update(play.report(), reply_s=play.runs_out - (play.started or play.runs_out))
            turn.update(stages_of((e for _, e in events.items), response_id))
            await asyncio.sleep(max(0.0, play.runs_out - time.perf_counter()))  # listen to the end
    except Exception as exc:  # a failed user is a result, not the benchmark's crash
        result.failed = f"{type(exc).__name__}: {exc}"
    finally:
        for task in (mic_task, reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        with contextlib.suppress(Exception):
            await ws.close()
    return result


_TIMELINE_EVENTS = (
    "input_audio_buffer.speech_stopped",
    "response.created",
    "response.done",
)


def turn_row(
    script: UserScript,
    n: int,
    speech_end: float,
    t_audio: float,
    timed: Iterable[tuple[float, dict[str, Any]]],
) -> dict[str, Any]:
    """Turn ``n`` as the user met it, from the events (with arrival times) since it was asked.

    Latency: true end of speech → the reply's first audio at ``t_audio``; the end-of-turn wait;
    and what came before that audio, ms after the end of speech (a turn answered through a tool
    shows two responses: the call, then the answer).
    """
    before = [(t, e) for t, e in timed if t <= t_audio]
    turn: dict[str, Any] = {
        "user": script.user,
        "first_turn": n == 0,
        "latency_ms": (t_audio - speech_end) * 1000,
        "interrupted": False,
    }
    stopped = [t for t, e in before if e["type"] == "input_audio_buffer.speech_stopped"]
    if stopped:
        turn["speech_stopped_ms"] = (stopped[-1] - speech_end) * 1000
    turn["timeline"] = [
        (round((t - speech_end) * 1000), e["type"]) for t, e in before if e["type"] in _TIMELINE_EVENTS
    ]
    turn["responses"] = sum(kind == "response.created" for _, kind in turn["timeline"])
    return turn


def stages_of(events: Iterable[dict[str, Any]], response_id: str) -> dict[str, Any]:
    """The engine's own stage times of a reply (``parley.metrics``, ms after ``speech_stopped``)."""
    keys = (
        "stt_done_ms",
        "response_created_ms",
        "llm_first_token_ms",
        "first_clause_ms",
        "tts_first_chunk_ms",
        "first_audio_sent_ms",
    )
    found: dict[str, Any] = {}
    for e in events:
        if e["type"] == "parley.metrics" and e.get("response_id") == response_id:
            found = {k: e.get(k) for k in keys}
    return found


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


async def one_level(
    users: int, args: argparse.Namespace, questions: list[np.ndarray], interruptions: list[np.ndarray]
) -> dict[str, Any]:
    port = _free_port()
    extra = ["--llm-model", args.llm_model] if args.llm_model else []
    async with engine_process(port, extra, command="serve") as proc:
        url = f"ws://127.0.0.1:{port}/api/v1/realtime?parley_metrics=1"
        runner: Any = run_user
        if args.transport == "webrtc":
            from parley.bench.load_webrtc import run_webrtc_user  # aiortc only when asked for

            url, runner = f"http://127.0.0.1:{port}", run_webrtc_user
        cpu0, wall0 = _cpu_seconds(proc.pid), time.perf_counter()
        rng = random.Random(args.seed + users)

        # Users arrive over the first seconds, not all in the same 20 ms.
        async def arrive(u: int) -> UserResult:
            await asyncio.sleep(u * args.stagger)
            script = UserScript(
                u,
                args.turns,
                questions,
                interruptions,
                random.Random(rng.random()),
                args.interrupt_share,
                args.reply_timeout,
            )
            return await runner(url, script)

        results = await asyncio.gather(*(arrive(u) for u in range(users)))
        cpu = (_cpu_seconds(proc.pid) - cpu0) / (time.perf_counter() - wall0) / (os.cpu_count() or 1)
        rss = _peak_rss_mb(proc.pid)
    turns = [t for r in results for t in r.turns]
    lat = [t["latency_ms"] for t in turns]
    level = {
        "users": users,
        "latency_ms": summary(lat),
        "first_turn_latency_ms": summary(t["latency_ms"] for t in turns if t["first_turn"]),
        "later_turn_latency_ms": summary(t["latency_ms"] for t in turns if not t["first_turn"]),
        "end_of_turn_wait_ms": summary(t.get("speech_stopped_ms") for t in turns),
        "llm_first_token_after_speech_stopped_ms": summary(t.get("llm_first_token_ms") for t in turns),
        "tts_first_chunk_after_speech_stopped_ms": summary(t.get("tts_first_chunk_ms") for t in turns),
        "turns": len(turns),
        # Answered after a tool call (two responses): the model runs twice before any audio.
        "tool_turn_latency_ms": summary(t["latency_ms"] for t in turns if t.get("responses", 1) > 1),
        "interrupted_turns": sum(1 for t in turns if t["interrupted"]),
        "underruns": sum(t.get("underruns", 0) for t in turns),
        "underrun_ms": round(sum(t.get("underrun_ms", 0.0) for t in turns), 1),
        "turns_with_underruns": sum(1 for t in turns if t.get("underruns")),
        "no_reply": sum(r.no_reply for r in results),
        "refused": sum(1 for r in results if r.refused),
        "failed": [r.failed for r in results if r.failed and not r.refused],
        "errors": [e for r in results for e in r.errors],
        "cpu_share": round(cpu, 3),
        "peak_rss_mb": rss,
        "turn_rows": turns,
    }
    p95 = level["latency_ms"]["p95"]
    level["meets_target"] = bool(
        p95 is not None
        and p95 <= args.target_ms
        and level["underruns"] == 0
        and not level["failed"]
        and not level["refused"]
        and level["no_reply"] == 0
    )
    return level


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    from rich.console import Console

    console = Console()
    with console.status("synthesising the users' questions"):
        questions = [synthesize(q) for q in QUESTIONS]
        interruptions = [synthesize(q) for q in INTERRUPTIONS]
    levels = []
    for users in args.users:
        with console.status(f"{users} users × {args.turns} turns"):
            level = await one_level(users, args, questions, interruptions)
        levels.append(level)
        _print_level(console, level)
    capacity = max((lv["users"] for lv in levels if lv["meets_target"]), default=0)
    report = {
        "benchmark": "load",
        "profile": "ui (parley serve, embedded engine, the page's session and serve's tools)",
        "transport": args.transport,
        "turn_detection": profiles.session("ui", 500)["audio"]["input"]["turn_detection"],
        "llm_model": args.llm_model or "default",
        "turns_per_user": args.turns,
        "interrupt_share": args.interrupt_share,
        "target_p95_ms": args.target_ms,
        "capacity_users": capacity,
        "levels": levels,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    out = args.out or (
        DEFAULT_OUT if args.transport == "websocket" else DEFAULT_OUT.with_name("load-webrtc.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    console.print(
        f"capacity: {capacity} concurrent spoken conversations (p95 ≤ {args.target_ms:.0f} ms, no underruns)"
    )
    console.print(f"wrote {out}")
    return report


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def _print_level(console: Any, lv: dict[str, Any]) -> None:
    lat, first = lv["latency_ms"], lv["first_turn_latency_ms"]
    console.print(
        f"[bold]{lv['users']} users[/]: end of speech → first audio p50 {_ms(lat['p50'])} ms, "
        f"p95 {_ms(lat['p95'])} ms (first turns {_ms(first['p50'])}/{_ms(first['p95'])}) over {lv['turns']} turns · "
        f"underruns {lv['underruns']} ({lv['underrun_ms']:.0f} ms in {lv['turns_with_underruns']} turns) · "
        f"no reply {lv['no_reply']} · refused {lv['refused']} · failed {len(lv['failed'])} · "
        f"errors {len(lv['errors'])} · CPU {lv['cpu_share'] * 100:.0f} % · RSS {lv['peak_rss_mb'] or 0:.0f} MB · "
        + ("[green]meets target[/]" if lv["meets_target"] else "[red]misses target[/]")
    )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--users",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 2, 3, 4],
        help="comma-separated numbers of concurrent users, one fresh server each (default 1,2,3,4)",
    )
    parser.add_argument("--turns", type=int, default=4, help="questions per user (default 4)")
    parser.add_argument(
        "--interrupt-share",
        type=float,
        default=0.25,
        help="share of replies the user interrupts (default 0.25)",
    )
    parser.add_argument("--stagger", type=float, default=0.7, help="seconds between users' arrivals")
    parser.add_argument("--target-ms", type=float, default=1200.0, help="p95 end of speech → first audio")
    parser.add_argument("--reply-timeout", type=float, default=30.0, help="seconds to wait for a reply")
    parser.add_argument("--llm-model", default=None, help="local LLM (default: the engine's)")
    parser.add_argument(
        "--transport",
        choices=("websocket", "webrtc"),
        default="websocket",
        help="how each user connects: serve's WebSocket relay, or a WebRTC call as the page makes",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--out", type=Path, default=None, help=f"JSON (default {DEFAULT_OUT}; load-webrtc.json for WebRTC)"
    )


def run(args: argparse.Namespace) -> int:
    asyncio.run(bench(args))
    return 0
