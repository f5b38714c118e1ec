"""``parley bench barge-in``: how fast the assistant goes quiet when interrupted, and how exactly.

Each trial opens a conversation with the real client (file devices running in
real time), asks for a long answer, lets it play for a random 0.8–1.6 s and
then "says" an interruption into the microphone (Piper speech mixed into the
mic stream at a known sample). Measured per trial:

* **onset → silent**: from the capture time of the first audible sample of the
  interruption to the speaker block from which the output stays silent —
  through the server's VAD, and with the local VAD assist;
* **onset → speech_started**: the server VAD's share of it;
* **truncation error**: ``audio_end_ms`` sent in ``conversation.item.truncate``
  minus the milliseconds of the item actually written to the output file
  (found by matching the received audio sample by sample in the output, not
  from the player's own bookkeeping).

Turn detection runs with ``create_response: false`` so the interruption does
not start a new answer that would blur the silence measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parley.bench.stats import summary
from parley.protocol.audio_formats import CANONICAL_RATE

PROMPTS = [
    "Tell me a long story about a dragon who lives in a castle.",
    "Describe the city of Paris in detail.",
    "Tell me a long story about a sailor and the sea.",
    "Describe a walk through a forest in autumn.",
]
INTERRUPTIONS = ["Stop, please stop.", "Wait, hold on a second.", "Sorry, one question.", "No, stop there."]
STORY_INSTRUCTIONS = "You are a storyteller. Always answer with at least five long sentences."
ONSET_THRESHOLD = 500  # int16 amplitude: the first audible sample of an utterance


# --- engine process ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def engine_process(
    port: int | None = None, *, api_key: str | None = None, ready_timeout: float = 180.0
) -> AsyncIterator[tuple[str, subprocess.Popen]]:
    """Run ``parley engine`` as a separate process; yields (base URL, process) once it accepts sessions."""
    port = port or free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "parley", "engine", "--port", str(port)]
    if api_key:
        cmd += ["--api-key", api_key]
    # Popen returns at once; the engine then lives in its own process like a real deployment.
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: ASYNC220
    base = f"http://127.0.0.1:{port}/v1"
    try:
        await wait_engine_ready(base, proc, api_key or "local", ready_timeout)
        yield base, proc
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if proc.stderr:
        proc.stderr.close()


async def wait_engine_ready(base: str, proc: subprocess.Popen | None, key: str, ready_timeout: float) -> None:
    """Ready = a WebSocket session opens and says ``session.created`` (models loaded)."""
    from websockets.asyncio.client import connect

    url = base.replace("http://", "ws://") + "/realtime?model=gpt-realtime"
    deadline = time.monotonic() + ready_timeout
    while True:
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace")[-3000:] if proc.stderr else ""
            raise RuntimeError(f"engine exited with {proc.returncode}: {err}")
        with contextlib.suppress(OSError, asyncio.TimeoutError, TimeoutError, Exception):
            async with connect(
                url, additional_headers={"Authorization": f"Bearer {key}"}, open_timeout=2
            ) as ws:
                first = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if first.get("type") == "session.created":
                    return
        if time.monotonic() > deadline:
            raise TimeoutError(f"engine at {base} not ready after {ready_timeout:.0f} s")
        await asyncio.sleep(0.5)


# --- measurement helpers ------------------------------------------------------------------


def onset_offset(pcm: np.ndarray) -> int:
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > ONSET_THRESHOLD)
    return int(loud[0]) if len(loud) else 0


def written_samples(out: np.ndarray, item: np.ndarray, start_hint: int = 0) -> tuple[int, int]:
    """(output index of the item's first distinctive sample, number of item samples written).

    File devices write the player's samples unchanged, so the item's audio appears
    sample for sample in the output, possibly broken by all-zero underrun gaps (over
    WebRTC, audio arrives in real time and the player can run dry for a moment). The
    search anchors on the first audible stretch of the item, counts everything before
    it as written (it was, in order), and follows the item through gaps until the output
    stops matching: the barge-in flush.
    """
    if not len(item):
        return -1, 0
    k = onset_offset(item)
    probe = item[k : k + 96]
    cands = np.flatnonzero(out[start_hint:] == probe[0]) + start_hint
    j = next((int(c) for c in cands if np.array_equal(out[c : c + len(probe)], probe)), -1)
    if j < 0:
        return -1, 0
    anchor = j
    while k < len(item) and j < len(out):
        n = min(len(item) - k, len(out) - j)
        eq = out[j : j + n] == item[k : k + n]
        m = n if eq.all() else int(np.argmin(eq))
        j, k = j + m, k + m
        if k >= len(item) or j >= len(out):
            break
        z = j
        while z < len(out) and out[z] == 0:
            z += 1
        ahead = min(48, len(item) - k, len(out) - z)
        if z > j and ahead > 0 and np.array_equal(out[z : z + ahead], item[k : k + ahead]):
            j = z  # an underrun gap; the item continues after it
            continue
        break
    return anchor, k


def silent_from(times: list[float], silent: list[bool], after: float, hold_s: float = 0.6) -> float | None:
    """Time of the first block at/after ``after`` from which the output stays silent for ``hold_s``."""
    for i, t in enumerate(times):
        if t < after - 1e-9 or not silent[i]:
            continue
        j = i
        while j < len(times) and silent[j] and times[j] - t < hold_s:
            j += 1
        if j >= len(times) or times[j] - t >= hold_s:
            return t
    return None


@dataclass
class Trial:
    mode: str
    transport: str
    onset_to_silent_ms: float | None
    onset_to_speech_started_ms: float | None
    onset_to_flush_ms: float | None
    audio_end_ms: int | None
    written_ms: float | None
    truncation_error_ms: float | None
    trigger: str | None
    played_before_ms: float
    speech_started_to_silent_ms: float | None = None
    full_transcript: str = ""
    truncated_transcript: str | None = None
    heard_audio: Any = None  # the item's samples as written to the output (for transcription checks)


async def run_trial(
    base: str,
    *,
    local_vad: bool,
    transport: str = "websocket",
    prompt: str,
    interruption: np.ndarray,
    play_s: float,
    out_wav: Path,
    retrieve: bool = True,
    api_key: str = "local",
) -> Trial:
    from parley.client.conversation import Conversation
    from parley.client.devices import FileAudio
    from parley.client.options import ClientOptions, SessionOptions
    from parley.client.wavio import read_wav

    audio = FileAudio(None, out_wav)
    conv = Conversation(
        base,
        api_key,
        transport=transport,
        audio=audio,
        session=SessionOptions(
            instructions=STORY_INSTRUCTIONS, create_response=False, transcription_model=None
        ),
        options=ClientOptions(local_vad=local_vad, reconnect=False),
    )
    received: dict[str, list[np.ndarray]] = {}
    speech_started: list[float] = []
    truncations: list[dict] = []
    conv.on("conversation.item.truncated", truncations.append)
    conv.on("input_audio_buffer.speech_started", lambda _e: speech_started.append(time.monotonic()))
    conv.on_assistant_audio.append(lambda item_id, pcm: received.setdefault(item_id, []).append(pcm))
    texts: dict[str, str] = {}
    conv.on(
        "assistant.transcript.delta",
        lambda e: texts.__setitem__(e["item_id"], texts.get(e["item_id"], "") + e["delta"]),
    )
    shown: dict[str, str] = {}
    conv.on("assistant.transcript.truncated", lambda e: shown.__setitem__(e["item_id"], e["text"]))
    onset: list[float] = []
    async with conv:
        await conv.send_text(prompt)
        await conv.wait_for("state", lambda e: e["state"] == "speaking", timeout=60)
        await asyncio.sleep(play_s)
        # Interrupt while the reply is audible (over WebRTC on a loaded machine the stream can stall).
        for _ in range(200):
            if conv.player.audible_item() is not None:
                break
            await asyncio.sleep(0.05)
        item_id = conv.player.audible_item()
        played_before = conv.player.handed(item_id) * 1000 / CANONICAL_RATE if item_id else 0.0
        off = onset_offset(interruption)
        audio.inject(interruption, lambda t: onset.append(t + off / CANONICAL_RATE))
        try:
            intr = await conv.wait_for("interrupted", timeout=10)
        except TimeoutError:
            intr = None
        if intr is not None:
            with contextlib.suppress(TimeoutError):
                await conv.wait_for(
                    "conversation.item.truncated", lambda e: e.get("item_id") == intr.item_id, timeout=5
                )
        await asyncio.sleep(1.0)  # let the output show it stays silent
        # Over WebRTC the server truncates first (to what it sent) and the client's own figure
        # (what reached the speaker) follows: the item ends up cut at the last one.
        trunc = truncations[-1] if truncations else None
        full = texts.get((intr.item_id if intr else item_id) or "", "")
        truncated_text = None
        if retrieve and intr is not None:
            with contextlib.suppress(Exception):
                item = await conv.retrieve_item(intr.item_id)
                truncated_text = (item.get("content") or [{}])[0].get("transcript")
        if intr is not None and intr.item_id in shown and truncated_text is not None:
            # What the client shows after the cut must be what the server kept.
            assert shown[intr.item_id] == truncated_text, (shown[intr.item_id], truncated_text)
    out = read_wav(out_wav)
    t0 = onset[0] if onset else None
    times, silent = list(audio.log.times), list(audio.log.silent)
    silent_at = silent_from(times, silent, t0) if t0 is not None else None
    ss = intr.speech_started_at if intr is not None else None
    ss_silent = silent_from(times, silent, ss) if ss is not None else None
    written_ms = err = None
    heard = None
    if intr is not None and intr.item_id in received:
        start_hint = 0
        item_pcm = np.concatenate(received[intr.item_id])
        _, n = written_samples(out, item_pcm, start_hint)
        heard = item_pcm[:n]
        if os.environ.get("PARLEY_BENCH_DUMP"):
            np.savez(os.environ["PARLEY_BENCH_DUMP"], out=out, item=item_pcm)
        written_ms = n * 1000 / CANONICAL_RATE
        end_ms = trunc["audio_end_ms"] if trunc else intr.audio_end_ms
        err = end_ms - written_ms
    return Trial(
        mode="local_vad" if local_vad else "server_vad",
        transport=transport,
        onset_to_silent_ms=(silent_at - t0) * 1000 if silent_at is not None and t0 is not None else None,
        onset_to_speech_started_ms=(speech_started[-1] - t0) * 1000 if speech_started and t0 else None,
        onset_to_flush_ms=(intr.detected_at - t0) * 1000 if intr is not None and t0 is not None else None,
        audio_end_ms=(trunc["audio_end_ms"] if trunc else intr.audio_end_ms) if intr is not None else None,
        written_ms=written_ms,
        truncation_error_ms=err,
        trigger=intr.trigger if intr else None,
        played_before_ms=played_before,
        speech_started_to_silent_ms=(ss_silent - ss) * 1000
        if ss_silent is not None and ss is not None
        else None,
        full_transcript=full,
        truncated_transcript=truncated_text,
        heard_audio=heard,
    )


# --- statistics & CLI ---------------------------------------------------------------------


async def bench(n: int, url: str | None, transport: str, seed: int = 1) -> dict[str, Any]:
    import tempfile

    from parley.bench.speech import silence, synthesize

    rng = random.Random(seed)
    interruptions = [np.concatenate([synthesize(t), silence(0.3)]) for t in INTERRUPTIONS]
    trials: list[Trial] = []
    failures: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        if url is None:
            started, _proc = await stack.enter_async_context(engine_process())
            url = started
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for mode in ("server_vad", "local_vad"):
            for i in range(n):
                try:
                    trial = await run_trial(
                        url,
                        local_vad=mode == "local_vad",
                        transport=transport,
                        prompt=PROMPTS[i % len(PROMPTS)],
                        interruption=interruptions[i % len(interruptions)],
                        play_s=rng.uniform(0.8, 1.6),
                        out_wav=tmp / f"{mode}-{i}.wav",
                        retrieve=False,
                    )
                    trials.append(trial)
                    print(
                        f"{mode:10s} #{i + 1:2d}: onset→silent {_fmt(trial.onset_to_silent_ms)} ms, "
                        f"onset→speech_started {_fmt(trial.onset_to_speech_started_ms)} ms, "
                        f"truncation error {_fmt(trial.truncation_error_ms)} ms ({trial.trigger})",
                        flush=True,
                    )
                except Exception as exc:  # a failed trial is reported, not hidden
                    failures.append(f"{mode} #{i + 1}: {type(exc).__name__}: {exc}")
                    print(failures[-1], flush=True)
    report: dict[str, Any] = {
        "benchmark": "barge-in",
        "transport": transport,
        "trials_per_mode": n,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count()},
        "failures": failures,
        "modes": {},
    }
    for mode in ("server_vad", "local_vad"):
        rows = [t for t in trials if t.mode == mode]
        report["modes"][mode] = {
            "onset_to_silent_ms": summary([t.onset_to_silent_ms for t in rows]),
            "onset_to_speech_started_ms": summary([t.onset_to_speech_started_ms for t in rows]),
            "truncation_error_ms": summary([t.truncation_error_ms for t in rows]),
            "abs_truncation_error_ms": summary(
                [abs(t.truncation_error_ms) for t in rows if t.truncation_error_ms is not None]
            ),
            "triggers": {k: sum(1 for t in rows if t.trigger == k) for k in {t.trigger for t in rows}},
        }
    report["trials"] = [{k: v for k, v in asdict(t).items() if k != "heard_audio"} for t in trials]
    return report


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.0f}"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--trials", type=int, default=20, help="interruptions per mode (default 20)")
    parser.add_argument(
        "--url", default=None, help="an already running server (default: start `parley engine`)"
    )
    parser.add_argument("--transport", choices=["websocket", "webrtc"], default="websocket")
    parser.add_argument("--out", type=Path, default=Path("bench/results/barge_in.json"))


def run(args: argparse.Namespace) -> int:
    report = asyncio.run(bench(args.trials, args.url, args.transport))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for mode, m in report["modes"].items():
        s, e = m["onset_to_silent_ms"], m["abs_truncation_error_ms"]
        print(
            f"{mode:10s} onset→silent p50 {_fmt(s['p50'])} ms p95 {_fmt(s['p95'])} ms (n={s['n']}); "
            f"|truncation error| p50 {_fmt(e['p50'])} ms p95 {_fmt(e['p95'])} ms"
        )
    print(f"wrote {args.out}")
    return 0 if not report["failures"] else 1
