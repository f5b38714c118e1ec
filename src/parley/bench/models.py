"""Per-stage latency of the local models: p50/p95, written to bench/results/models.json.

    parley bench models [--reps N]

Measures, with the engine's own ModelSet (loaded and warmed as the engine does):
VAD cost per 32 ms frame, STT time for 1/2/4/8 s of speech (Piper voice, cut
at word ends using the TTS word timings), LLM time to first token and decode
speed, TTS time to the first chunk, load times, and the process's peak RSS
after all four models have run (including all at once).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from parley.bench.stats import summary
from parley.engine.config import ModelConfig
from parley.engine.models.base import ChatMessage, ChatRequest, Finish, SpeechChunk, TextDelta
from parley.engine.models.registry import ModelSet, load_models

RESULTS = Path("bench/results/models.json")
PARAGRAPH = (
    "Yesterday my sister and I walked along the river to the old market, where we bought fresh bread, "
    "some cheese and a basket of apples, and then we sat in the park and talked about our plans for the summer."
)
QUESTIONS = [
    "What is the capital of France?",
    "Who wrote Romeo and Juliet?",
    "Add eggs and bread to my shopping list.",
    "What is the largest planet in the solar system?",
    "How many legs does a spider have?",
    "Set a timer for ten minutes.",
]
REPLY = "Sure, I can help with that. The capital of France is Paris, a city famous for its museums."


def stats(values: list[float], scale: float = 1000.0) -> dict[str, float]:
    s = summary(v * scale for v in values)
    return {"p50": round(s["p50"], 2), "p95": round(s["p95"], 2), "n": s["n"]}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def speech_clips(models: ModelSet) -> dict[int, np.ndarray]:
    """16 kHz clips of ~1/2/4/8 s of continuous speech, cut at word ends."""
    chunks = [c async for c in models.tts.synthesize(PARAGRAPH)]
    audio = np.concatenate([c.audio for c in chunks]).astype(np.float32) / 32768
    rate = chunks[0].sample_rate
    ends, offset = [], 0.0
    for c in chunks:
        ends += [offset + w.end for w in c.words]
        offset += c.duration
    clips = {}
    for target in (1, 2, 4, 8):
        end = min(ends, key=lambda e: abs(e - target))
        clip = audio[: int((end + 0.05) * rate)]
        clips[target] = soxr.resample(clip, rate, 16000).astype(np.float32)
    return clips


async def bench_vad(models: ModelSet, clip: np.ndarray) -> dict[str, float]:
    vad = models.vad
    stream = vad.stream()
    frames = [
        clip[i : i + vad.frame_samples] for i in range(0, len(clip) - vad.frame_samples, vad.frame_samples)
    ]
    times = []
    for _ in range(10):
        for frame in frames:
            t = time.perf_counter()
            stream(frame)
            times.append(time.perf_counter() - t)
    return stats(times, 1e6)  # µs


async def bench_stt(models: ModelSet, clips: dict[int, np.ndarray], reps: int) -> dict[str, dict]:
    out = {}
    for seconds, clip in clips.items():
        times, text = [], ""
        for _ in range(reps):
            result = await models.stt.transcribe(clip)
            times.append(result.elapsed_seconds)
            text = result.text
        out[f"{seconds}s"] = {**stats(times), "audio_s": round(len(clip) / 16000, 2), "text": text}
    return out


async def bench_llm(models: ModelSet, reps: int) -> dict[str, dict]:
    ttft, tps = [], []
    for _ in range(reps):
        for q in QUESTIONS:
            t0 = time.perf_counter()
            first = None
            finish = None
            async for chunk in models.llm.stream(ChatRequest([ChatMessage("user", q)], max_tokens=64)):
                if first is None and isinstance(chunk, TextDelta):
                    first = time.perf_counter()
                if isinstance(chunk, Finish):
                    finish = chunk
            end = time.perf_counter()
            assert first is not None and finish is not None
            ttft.append(first - t0)
            if finish.output_tokens > 1 and end > first:
                tps.append((finish.output_tokens - 1) / (end - first))
    return {"ttft_ms": stats(ttft), "decode_tok_per_s": stats(tps, 1.0)}


async def bench_tts(models: ModelSet, reps: int) -> dict[str, dict]:
    first, rtf = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        chunks: list[SpeechChunk] = []
        async for chunk in models.tts.synthesize(REPLY):
            if not chunks:
                first.append(time.perf_counter() - t0)
            chunks.append(chunk)
        rtf.append((time.perf_counter() - t0) / sum(c.duration for c in chunks))
    return {"first_chunk_ms": stats(first), "real_time_factor": stats(rtf, 1.0)}


async def all_at_once(models: ModelSet, clip: np.ndarray) -> float:
    """Every stage busy at the same time (an overlapping turn); returns wall seconds."""
    t0 = time.perf_counter()

    async def llm() -> None:
        async for _ in models.llm.stream(
            ChatRequest([ChatMessage("user", "Tell me a story.")], max_tokens=96)
        ):
            pass

    async def tts() -> None:
        async for _ in models.tts.synthesize(REPLY):
            pass

    async def vad() -> None:
        stream = models.vad.stream()
        for i in range(0, len(clip) - 512, 512):
            stream(clip[i : i + 512])
            await asyncio.sleep(0)

    await asyncio.gather(llm(), tts(), models.stt.transcribe(clip), vad())
    return time.perf_counter() - t0


async def main(args: argparse.Namespace) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    rss_start = peak_rss_mb()
    t0 = time.perf_counter()
    models = await load_models(ModelConfig())
    load_total = time.perf_counter() - t0
    rss_loaded = peak_rss_mb()

    clips = await speech_clips(models)
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_start": os.getloadavg(),
        },
        "load_s": {
            "total": round(load_total, 2),
            **{s: round(v.load_seconds + v.warmup_seconds, 2) for s, v in models.stages.items()},
        },
        "vad_frame_us": await bench_vad(models, clips[8]),
        "stt_ms": await bench_stt(models, clips, args.reps),
        "llm": await bench_llm(models, max(1, args.reps // 2)),
        "tts": await bench_tts(models, args.reps * 2),
    }
    results["all_stages_at_once_s"] = round(await all_at_once(models, clips[4]), 2)
    results["rss_mb"] = {
        "start": round(rss_start),
        "after_load": round(rss_loaded),
        "peak_after_use": round(peak_rss_mb()),
    }
    results["machine"]["loadavg_end"] = os.getloadavg()
    await models.aclose()

    await asyncio.to_thread(_write, results)
    print(f"{'stage':<28}{'p50':>10}{'p95':>10}")
    print(
        f"{'VAD per frame (µs)':<28}{results['vad_frame_us']['p50']:>10}{results['vad_frame_us']['p95']:>10}"
    )
    for k, v in results["stt_ms"].items():
        print(f"{'STT ' + k + ' clip (ms)':<28}{v['p50']:>10}{v['p95']:>10}")
    llm = results["llm"]
    print(f"{'LLM TTFT (ms)':<28}{llm['ttft_ms']['p50']:>10}{llm['ttft_ms']['p95']:>10}")
    print(
        f"{'LLM decode (tok/s)':<28}{llm['decode_tok_per_s']['p50']:>10}{llm['decode_tok_per_s']['p95']:>10}"
    )
    tts = results["tts"]
    print(f"{'TTS first chunk (ms)':<28}{tts['first_chunk_ms']['p50']:>10}{tts['first_chunk_ms']['p95']:>10}")
    print(
        f"{'TTS real-time factor':<28}{tts['real_time_factor']['p50']:>10}{tts['real_time_factor']['p95']:>10}"
    )
    print(f"load: {results['load_s']}  all stages at once: {results['all_stages_at_once_s']} s")
    print(f"RSS MB: {results['rss_mb']}  -> {RESULTS}")


def _write(results: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="S",
        help="first wait up to S seconds for a 1-min load < 1",
    )


def run(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.wait_idle
    while os.getloadavg()[0] >= 1.0 and time.monotonic() < deadline:
        time.sleep(5)  # other processes on 2 cores distort every figure here
    asyncio.run(main(args))
    return 0
