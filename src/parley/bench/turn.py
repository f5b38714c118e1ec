"""``parley bench turn``: turn latency and barge-in through a real WebSocket.

Each run starts the engine as a separate process (so its peak RSS is its own; with the ``ui``
profile, ``parley serve`` with its embedded engine, so its tools run as in the browser),
then plays synthesised utterances at real-time pace, like a microphone would,
and times what comes back:

* speech end → ``speech_stopped`` (includes ``silence_duration_ms`` by design)
* engine stages from Parley's opt-in ``parley.metrics`` event: STT done, LLM
  first token, first clause, TTS first chunk (relative to ``speech_stopped``;
  negative when speculative work finished during the pause)
* speech end → first ``response.output_audio.delta`` (the turn latency), and
  that minus ``silence_duration_ms`` (the part that is compute, not waiting)
* barge-in: a second utterance starts as soon as the reply's audio starts;
  its onset → ``speech_started`` → the cancelled ``response.done``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from parley.bench import profiles
from parley.bench.speech import silence, synthesize, voiced_span
from parley.bench.stats import summary
from parley.protocol.audio_formats import CANONICAL_RATE

# Questions that invite a few sentences, so a reply is usually still being
# generated when the barge-in comes and its cancellation can be timed.
QUESTIONS = [
    "What is the capital of France, and what is it famous for?",
    "Who wrote Romeo and Juliet, and what is the story about?",
    "What is the largest planet in our solar system? Tell me about it.",
    "How do spiders make their webs?",
    "Why is the sky blue on a clear day?",
    "Can you tell me about a famous painter?",
    "What happens when water boils?",
    "Which ocean is the largest, and where is it?",
    "What language do people speak in Brazil, and why?",
    "Tell me something interesting about the moon.",
    "What is the tallest mountain in the world, and where is it?",
    "Who painted the Mona Lisa? Tell me about him.",
    "How do bees make honey?",
    "What are the seven days of the week?",
    "What is the capital of Japan, and what is it like?",
    "Why is the lion called the king of the jungle?",
    "What is gold, and why is it valuable?",
    "Tell me about the Eiffel Tower.",
    "What is the fastest land animal, and how fast can it run?",
    "How many continents are there? Can you name them?",
    "How is bread made?",
    "Which planet is closest to the sun, and what is it like?",
]
INTERRUPTIONS = [
    "Wait, stop, tell me about dogs instead.",
    "Sorry, actually, what time is it?",
    "Hold on, I have another question.",
    "No, never mind, tell me about cats.",
]
CHUNK_MS = 20
DEFAULT_OUT = Path("bench/results/turn.json")


class Microphone:
    """Sends queued audio in 20 ms chunks on a fixed real-time schedule (silence when idle)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.queue: deque[tuple[np.ndarray, float, float, str]] = deque()
        self.sent_voice: dict[str, tuple[float, float]] = {}  # label → (wall onset, wall end)
        self._current: tuple[np.ndarray, int, float, float, str] | None = None
        self.step = CANONICAL_RATE * CHUNK_MS // 1000

    def say(self, pcm: np.ndarray, label: str) -> None:
        start, end = voiced_span(pcm)
        self.queue.append((pcm, start, end, label))

    @property
    def idle(self) -> bool:
        return self._current is None and not self.queue

    def _next_chunk(self, now: float) -> np.ndarray:
        if self._current is None and self.queue:
            pcm, start, end, label = self.queue.popleft()
            self._current = (pcm, 0, start, end, label)
        if self._current is None:
            return np.zeros(self.step, dtype=np.int16)
        pcm, pos, start, end, label = self._current
        chunk = pcm[pos : pos + self.step]
        t0, t1 = pos / CANONICAL_RATE, (pos + len(chunk)) / CANONICAL_RATE
        onset, ending = self.sent_voice.get(label, (None, None))
        if onset is None and t1 > start:
            onset = now + max(0.0, start - t0)
        if t0 <= end <= t1 or (ending is None and t1 >= end):
            ending = now + max(0.0, end - t0)
        self.sent_voice[label] = (onset, ending)  # type: ignore[assignment]
        pos += self.step
        self._current = None if pos >= len(pcm) else (pcm, pos, start, end, label)
        if len(chunk) < self.step:
            chunk = np.concatenate([chunk, np.zeros(self.step - len(chunk), dtype=np.int16)])
        return chunk

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            now = time.perf_counter()
            chunk = self._next_chunk(now)
            await self.ws.send(
                json.dumps(
                    {"type": "input_audio_buffer.append", "audio": base64.b64encode(chunk.tobytes()).decode()}
                )
            )
            next_at += CHUNK_MS / 1000
            await asyncio.sleep(max(0.0, next_at - loop.time()))


@dataclass
class SessionResult:
    turns: list[dict[str, Any]] = field(default_factory=list)
    barge_ins: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def run_session(
    url: str,
    question: np.ndarray,
    interruption: np.ndarray,
    silence_ms: int,
    timeout: float = 60.0,
    profile: str = "ui",
    turn_mode: str | None = None,
) -> SessionResult:
    import websockets

    result = SessionResult()
    async with websockets.connect(url, max_size=None) as ws:
        events: list[tuple[float, dict[str, Any]]] = []
        arrived = asyncio.Event()

        async def reader() -> None:
            async for raw in ws:
                events.append((time.perf_counter(), json.loads(raw)))
                arrived.set()

        async def wait_for(kind: str, where: Any = None, start: int = 0) -> tuple[int, float, dict[str, Any]]:
            i = start
            async with asyncio.timeout(timeout):
                while True:
                    while i < len(events):
                        t, e = events[i]
                        if e["type"] == kind and (where is None or where(e)):
                            return i, t, e
                        if e["type"] == "error":
                            result.errors.append(json.dumps(e["error"]))
                        i += 1
                    arrived.clear()
                    await arrived.wait()

        read_task = asyncio.create_task(reader())
        await wait_for("session.created")
        # Through parley serve (the ui profile) its tools are already in the session, run by it.
        session = profiles.session(profile, silence_ms, turn=turn_mode, tools=profile != "ui")
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        await wait_for("session.updated")
        mic = Microphone(ws)
        mic_task = asyncio.create_task(mic.run())
        try:
            mic.say(np.concatenate([silence(0.3), question]), "question")
            # Turn 1: the question.
            i_stop, t_stop, _ = await wait_for("input_audio_buffer.speech_stopped")
            i_audio, t_audio, first = await wait_for("response.output_audio.delta", start=i_stop)
            response_id = first["response_id"]
            # Barge in the moment the reply starts playing.
            mic.say(interruption, "interruption")
            speech_end = mic.sent_voice["question"][1]
            turn = {
                "first_turn": True,  # of a fresh session: pays for anything not prepared ahead
                "speech_end_to_speech_stopped_ms": (t_stop - speech_end) * 1000,
                "turn_latency_ms": (t_audio - speech_end) * 1000,
                "turn_latency_minus_silence_ms": (t_audio - speech_end) * 1000 - silence_ms,
            }
            i_started, t_started, _ = await wait_for("input_audio_buffer.speech_started", start=i_audio)
            i_done, t_done, done = await wait_for(
                "response.done", where=lambda e: e["response"]["id"] == response_id
            )
            onset = mic.sent_voice["interruption"][0]
            barge: dict[str, Any] = {
                "onset_to_speech_started_ms": (t_started - onset) * 1000,
                "response_status": done["response"]["status"],
            }
            if done["response"]["status"] == "cancelled" and i_done > i_started:
                barge["speech_started_to_cancelled_done_ms"] = (t_done - t_started) * 1000
            late = [
                e
                for _, e in events[i_done + 1 :]
                if e.get("response_id") == response_id and e["type"].startswith("response.output")
            ]
            barge["deltas_after_done"] = len(late)
            result.barge_ins.append(barge)
            _, _, metrics = await wait_for("parley.metrics", where=lambda e: e["response_id"] == response_id)
            turn.update(_stages(metrics))
            _, _, transcript = await wait_for("conversation.item.input_audio_transcription.completed")
            turn["transcript"] = transcript["transcript"]
            result.turns.append(turn)
            # Turn 2: the interruption itself gets answered.
            _, t_stop2, _ = await wait_for("input_audio_buffer.speech_stopped", start=i_started)
            _, t_audio2, first2 = await wait_for(
                "response.output_audio.delta",
                where=lambda e: e["response_id"] != response_id,
                start=i_started,
            )
            end2 = mic.sent_voice["interruption"][1]
            turn2 = {
                "first_turn": False,
                "speech_end_to_speech_stopped_ms": (t_stop2 - end2) * 1000,
                "turn_latency_ms": (t_audio2 - end2) * 1000,
                "turn_latency_minus_silence_ms": (t_audio2 - end2) * 1000 - silence_ms,
            }
            _, _, metrics2 = await wait_for(
                "parley.metrics", where=lambda e: e["response_id"] == first2["response_id"]
            )
            turn2.update(_stages(metrics2))
            result.turns.append(turn2)
        finally:
            mic_task.cancel()
            read_task.cancel()
            for task in (mic_task, read_task):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
    return result


def _stages(metrics: dict[str, Any]) -> dict[str, Any]:
    stt = None
    if metrics.get("stt_done_ms") is not None and metrics.get("stt_started_ms") is not None:
        stt = metrics["stt_done_ms"] - metrics["stt_started_ms"]
    return {
        "speculative": metrics.get("speculative"),
        "stt_ms": stt,
        "stt_done_ms": metrics.get("stt_done_ms"),
        "llm_first_token_ms": metrics.get("llm_first_token_ms"),
        "first_clause_ms": metrics.get("first_clause_ms"),
        "tts_first_chunk_ms": metrics.get("tts_first_chunk_ms"),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@contextlib.asynccontextmanager
async def engine_process(  # type: ignore[no-untyped-def]
    port: int, extra_args: list[str] | None = None, command: str = "engine"
):
    """``parley engine`` (or ``parley serve`` with its embedded engine) on ``port``, once ready."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PARLEY_VALIDATE_EVENTS="0")
    env.pop("OPENAI_API_KEY", None)  # serve: always the local engine
    health = "/healthz" if command == "engine" else "/api/health"
    # PARLEY_BENCH_SERVER_LOG=path: the server's log goes there (with PARLEY_DEBUG=parley.engine
    # for each turn's end-of-turn looks), to find out where a slow turn spent its time.
    log_path = os.environ.get("PARLEY_BENCH_SERVER_LOG")
    stderr = open(log_path, "ab") if log_path else subprocess.PIPE  # noqa: ASYNC230 - once, closed below
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "parley", command, "--port", str(port), *(extra_args or [])],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    try:
        import httpx

        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"engine exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    r = await http.get(f"http://127.0.0.1:{port}{health}")
                    # serve: also once the prompts it prepares are evaluated (seconds after start-up,
                    # well before a person who has just opened the page speaks).
                    if (
                        r.status_code == 200
                        and r.json().get("status") == "ok"
                        and r.json().get("prompts_ready", True)
                    ):
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError("engine did not become ready")
                await asyncio.sleep(0.25)
        yield proc
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if log_path:
            stderr.close()  # type: ignore[union-attr]
        if proc.poll() is None:
            proc.kill()


async def bench(
    n: int, silence_ms: int, url: str | None, out: Path, profile: str = "ui", turn: str | None = None
) -> dict[str, Any]:
    from rich.console import Console

    console = Console()
    questions = [synthesize(q) for q in QUESTIONS]
    interruptions = [synthesize(q) for q in INTERRUPTIONS]
    results: list[SessionResult] = []
    peak_rss = None

    async def run_all(ws_url: str, pid: int | None) -> None:
        nonlocal peak_rss
        for i in range(n):
            with console.status(f"session {i + 1}/{n}"):
                results.append(
                    await run_session(
                        ws_url,
                        questions[i % len(questions)],
                        interruptions[i % len(interruptions)],
                        silence_ms,
                        profile=profile,
                        turn_mode=turn,
                    )
                )
        if pid is not None:
            peak_rss = _peak_rss_mb(pid)

    if url:
        await run_all(url, None)
    else:
        port = _free_port()
        if profile == "ui":
            # What users get: parley serve with its embedded engine, its tools run by it (a
            # question that calls a tool is answered after the tool has run, as in the browser).
            async with engine_process(port, command="serve") as proc:
                await run_all(f"ws://127.0.0.1:{port}/api/v1/realtime?parley_metrics=1", proc.pid)
        else:
            async with engine_process(port) as proc:
                await run_all(f"ws://127.0.0.1:{port}/v1/realtime?parley_metrics=1", proc.pid)

    turns = [t for r in results for t in r.turns]
    barges = [b for r in results for b in r.barge_ins]
    for t in turns:
        # Speech end → the reply's first clause synthesised, whatever the end-of-turn wait:
        # how soon the reply could be heard if the turn were taken the moment speech ended.
        if t.get("speech_end_to_speech_stopped_ms") is not None and t.get("tts_first_chunk_ms") is not None:
            t["reply_ready_ms"] = t["speech_end_to_speech_stopped_ms"] + t["tts_first_chunk_ms"]
    firsts = [t for t in turns if t.get("first_turn")]
    laters = [t for t in turns if not t.get("first_turn")]

    def col(rows: list[dict[str, Any]], key: str) -> list[float]:
        return [r[key] for r in rows if r.get(key) is not None]

    report = {
        "benchmark": "turn",
        "profile": profile,
        "turn_detection": profiles.session(profile, silence_ms, turn=turn)["audio"]["input"][
            "turn_detection"
        ],
        "sessions": n,
        "silence_duration_ms": silence_ms,
        "turns": len(turns),
        "metrics": {
            "speech_end_to_speech_stopped_ms": summary(col(turns, "speech_end_to_speech_stopped_ms")),
            "stt_ms": summary(col(turns, "stt_ms")),
            "stt_done_after_speech_stopped_ms": summary(col(turns, "stt_done_ms")),
            "llm_first_token_after_speech_stopped_ms": summary(col(turns, "llm_first_token_ms")),
            "first_clause_after_speech_stopped_ms": summary(col(turns, "first_clause_ms")),
            "tts_first_chunk_after_speech_stopped_ms": summary(col(turns, "tts_first_chunk_ms")),
            "turn_latency_ms": summary(col(turns, "turn_latency_ms")),
            "turn_latency_minus_silence_ms": summary(col(turns, "turn_latency_minus_silence_ms")),
            "first_turn_latency_ms": summary(col(firsts, "turn_latency_ms")),
            "first_turn_latency_minus_silence_ms": summary(col(firsts, "turn_latency_minus_silence_ms")),
            "first_turn_llm_first_token_after_speech_stopped_ms": summary(col(firsts, "llm_first_token_ms")),
            "later_turn_latency_ms": summary(col(laters, "turn_latency_ms")),
            "later_turn_latency_minus_silence_ms": summary(col(laters, "turn_latency_minus_silence_ms")),
            "first_turn_reply_ready_ms": summary(col(firsts, "reply_ready_ms")),
            "later_turn_reply_ready_ms": summary(col(laters, "reply_ready_ms")),
            "barge_in_onset_to_speech_started_ms": summary(col(barges, "onset_to_speech_started_ms")),
            "barge_in_speech_started_to_cancelled_done_ms": summary(
                col(barges, "speech_started_to_cancelled_done_ms")
            ),
        },
        "speculative_turns": sum(1 for t in turns if t.get("speculative")),
        "barge_ins": len(barges),
        "barge_ins_cancelled_in_flight": len(col(barges, "speech_started_to_cancelled_done_ms")),
        "deltas_after_cancelled_done": sum(b["deltas_after_done"] for b in barges),
        "peak_rss_mb": peak_rss,
        "errors": [e for r in results for e in r.errors],
        "transcripts": [t.get("transcript") for t in turns if t.get("transcript")],
        "turn_rows": turns,
        "barge_in_rows": barges,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    _write_json(out, report)
    _print(console, report)
    console.print(f"wrote {out}")
    return report


def _write_json(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def _print(console: Any, report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(
        title=f"parley bench turn ({report['profile']} profile) — {report['turns']} turns, {report['barge_ins']} barge-ins, "
        f"silence_duration_ms={report['silence_duration_ms']}"
    )
    for name in ("metric", "p50 ms", "p95 ms", "n"):
        table.add_column(name, justify="right" if name != "metric" else "left")
    for key, s in report["metrics"].items():
        table.add_row(key, _ms(s["p50"]), _ms(s["p95"]), str(s["n"]))
    console.print(table)
    console.print(
        f"peak RSS of the engine: {report['peak_rss_mb'] or 0:.0f} MB · speculative turns: "
        f"{report['speculative_turns']}/{report['turns']} · deltas after a cancelled response.done: "
        f"{report['deltas_after_cancelled_done']} · errors: {len(report['errors'])}"
    )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n",
        "--sessions",
        type=int,
        default=12,
        help="sessions; each gives 2 turns and 1 barge-in (default 12 → 24 turns)",
    )
    parser.add_argument("--silence-ms", type=int, default=500, help="server_vad silence_duration_ms")
    parser.add_argument(
        "--profile",
        choices=profiles.PROFILES,
        default="ui",
        help="ui: the web page's session with parley serve's tools (what users get); bare: engine defaults",
    )
    parser.add_argument(
        "--turn",
        choices=("server_vad", "semantic_vad"),
        default=None,
        help="turn detection (default: the page's own for --profile ui, server_vad for bare)",
    )
    parser.add_argument(
        "--url", default=None, help="benchmark a running engine (ws://…/v1/realtime?parley_metrics=1)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)


def run(args: argparse.Namespace) -> int:
    out = (
        args.out
        if args.profile == "ui" or args.out != DEFAULT_OUT
        else DEFAULT_OUT.with_name("turn-bare.json")
    )
    asyncio.run(bench(args.sessions, args.silence_ms, args.url, out, args.profile, args.turn))
    return 0
