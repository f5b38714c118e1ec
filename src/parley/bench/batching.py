"""What batching work of several sessions would buy on this machine: Whisper and llama.cpp.

    parley bench batching [--reps N] [--steps N]

Several conversations on one engine queue for the same models when their turns coincide
(`parley bench load`). Batching is the usual answer on a GPU. This measures it on the CPU the
engine runs on, with the engine's own models and thread counts, before anyone builds it:

* **Whisper**: B utterances (Piper speech, 1.8-3.2 s) transcribed one after another through the
  engine's fast path, against one batched CTranslate2 call on the same features and prompt;
* **LLM decoding**: one llama.cpp context holding S sequences (S conversations), each step
  decoding one token of every sequence in one ``llama_decode``, against one sequence alone;
* **LLM prefill**: S users' words (30 tokens each) evaluated in one batch, against one at a time.

Writes bench/results/batching.json. The batched paths here are measurement code, not the
engine's: the engine interleaves sessions (see Pipeline in the README).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from parley.bench.speech import synthesize, words
from parley.bench.stats import summary
from parley.engine.config import ModelConfig

RESULTS = Path("bench/results/batching.json")
UTTERANCES = (
    "What is the capital of France, and what is it famous for?",
    "Which planet is closest to the sun?",
    "Tell me something interesting about the moon.",
    "How do spiders make their webs?",
)
SIZES = (1, 2, 4)
PROMPT_TOKENS = 200  # a session's system block already in the cache
USER_TOKENS = 30  # a spoken question with its chat-template tokens


def _ms(values: list[float]) -> dict[str, Any]:
    s = summary(v * 1000 for v in values)
    return {"n": s["n"], "p50_ms": round(s["p50"], 1), "p95_ms": round(s["p95"], 1)}


# --- Whisper ---------------------------------------------------------------------------------


def whisper_batching(stt: Any, reps: int) -> list[dict[str, Any]]:
    """B clips one by one (the engine's path) vs one batched generate over the same window."""
    import ctranslate2

    clips = [synthesize(text, rate=16000).astype(np.float32) / 32768 for text in UTTERANCES]
    tokenizer = stt._tokenizer("en")
    prompt = stt._prompt(tokenizer, None, timestamps=True)

    texts: list[str] = []

    def batched(batch: list[np.ndarray]) -> float:
        # From the waveforms, with the fast path's window (that of the longest clip) and options.
        started = time.perf_counter()
        seconds = max(len(c) for c in batch) / 16000
        window = stt.window_seconds(seconds)
        mels = np.stack([stt.window_features(clip, window) for clip in batch])
        results = stt._ct2.generate(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(mels)),
            [prompt] * len(batch),
            beam_size=1,
            max_length=min(len(prompt) + int(8 * seconds) + 16, 448),
            suppress_blank=True,
            suppress_tokens=[-1],
            return_scores=True,
            return_no_speech_prob=True,
        )
        elapsed = time.perf_counter() - started
        texts[:] = [tokenizer.decode(r.sequences_ids[0]).strip() for r in results]
        return elapsed

    def sequential(batch: list[np.ndarray]) -> float:
        started = time.perf_counter()
        for clip in batch:
            stt.transcribe_sync(clip)
        return time.perf_counter() - started

    # Like for like: the batched call must hear what the engine's path hears.
    engine_words = [words(stt.transcribe_sync(clip).text) for clip in clips]
    batched(clips)
    same_words = [words(t) for t in texts] == engine_words
    rows: list[dict[str, Any]] = []
    for size in SIZES:
        batch = clips[:size]
        one_by_one = [sequential(batch) for _ in range(reps)]
        together = [batched(batch) for _ in range(reps)]
        rows.append(
            {
                "utterances": size,
                "one_by_one": _ms(one_by_one),
                "batched": _ms(together),
                "throughput_gain": round(float(np.median(one_by_one) / np.median(together)), 2),
                "same_words": same_words,
            }
        )
    return rows


# --- llama.cpp --------------------------------------------------------------------------------


class _Sequences:
    """A bare llama.cpp context with room for several sequences, as the engine's threads."""

    def __init__(self, gguf: Path, threads: int, n_seq: int) -> None:
        import llama_cpp as lc
        from llama_cpp._utils import suppress_stdout_stderr

        self.lc = lc
        with suppress_stdout_stderr(disable=False):  # llama.cpp's load report, as Llama(verbose=False)
            lc.llama_backend_init()
            self.model = lc.llama_model_load_from_file(str(gguf).encode(), lc.llama_model_default_params())
            params = lc.llama_context_default_params()
            params.n_ctx = 4096
            params.n_batch = params.n_ubatch = 512
            params.n_seq_max = n_seq
            params.n_threads = params.n_threads_batch = threads
            self.ctx = lc.llama_init_from_model(self.model, params)
        self.memory = lc.llama_get_memory(self.ctx)
        self.batch = lc.llama_batch_init(512, 0, n_seq)

    def decode(self, entries: list[tuple[int, int, int, bool]]) -> None:
        """(token, position, sequence, wants logits) per entry, in one llama_decode."""
        b = self.batch
        b.n_tokens = len(entries)
        for i, (token, pos, seq, logits) in enumerate(entries):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = token, pos, 1, logits
            b.seq_id[i][0] = seq
        if self.lc.llama_decode(self.ctx, b) != 0:
            raise RuntimeError("llama_decode failed")

    def clear(self) -> None:
        self.lc.llama_memory_clear(self.memory, True)

    def close(self) -> None:
        from llama_cpp._utils import suppress_stdout_stderr

        with suppress_stdout_stderr(disable=False):
            self.lc.llama_batch_free(self.batch)
            self.lc.llama_free(self.ctx)
            self.lc.llama_model_free(self.model)


def llm_batching(gguf: Path, threads: int, steps: int, reps: int) -> dict[str, Any]:
    seqs = _Sequences(gguf, threads, max(SIZES))
    try:
        prompt = [1000 + i for i in range(PROMPT_TOKENS)]  # token ids only: the cost is in the shapes
        decoding = []
        for size in SIZES:
            seqs.clear()
            for s in range(size):
                seqs.decode([(t, p, s, p == len(prompt) - 1) for p, t in enumerate(prompt)])
            step_times = []
            for k in range(steps):
                started = time.perf_counter()
                seqs.decode([(500 + k, len(prompt) + k, s, True) for s in range(size)])
                step_times.append(time.perf_counter() - started)
            per_step = float(np.median(step_times))
            decoding.append(
                {"sequences": size, "step": _ms(step_times), "tokens_per_s": round(size / per_step, 1)}
            )
        prefill = []
        for size in SIZES:
            alone, together = [], []
            for _ in range(reps):
                seqs.clear()
                started = time.perf_counter()
                for s in range(size):
                    seqs.decode([(2000 + p, p, s, p == USER_TOKENS - 1) for p in range(USER_TOKENS)])
                alone.append(time.perf_counter() - started)
                seqs.clear()
                started = time.perf_counter()
                entries = [
                    (2000 + p, p, s, p == USER_TOKENS - 1) for s in range(size) for p in range(USER_TOKENS)
                ]
                seqs.decode(entries)
                together.append(time.perf_counter() - started)
            prefill.append({"users": size, "one_by_one": _ms(alone), "batched": _ms(together)})
        single = decoding[0]["tokens_per_s"]
        for row in decoding:
            row["throughput_gain"] = round(row["tokens_per_s"] / single, 2)  # type: ignore[operator]
        return {"decoding": decoding, "prefill": prefill}
    finally:
        seqs.close()


# --- command ----------------------------------------------------------------------------------


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    from parley.engine.models import llm_catalog
    from parley.engine.models.registry import load_stage

    cfg = ModelConfig()
    if args.llm_model:
        cfg.llm_model = args.llm_model
    stt = (await load_stage("stt", cfg)).model
    model = llm_catalog.get(cfg.llm_model)
    gguf = await asyncio.to_thread(llm_catalog.prepare, Path(cfg.cache_dir), model)
    whisper = await asyncio.to_thread(whisper_batching, stt, args.reps)
    stt.close()
    llm = await asyncio.to_thread(llm_batching, gguf, cfg.llm_threads, args.steps, args.reps)
    return {
        "benchmark": "batching",
        "whisper": whisper,
        "llm_model": model.name,
        "llm": llm,
        "threads": {"stt": cfg.stt_threads, "llm": cfg.llm_threads},
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _span(stats: dict[str, Any], digits: int = 0) -> str:
    return f"{stats['p50_ms']:.{digits}f} / {stats['p95_ms']:.{digits}f} ms"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reps", type=int, default=5, help="repetitions of each Whisper and prefill case")
    parser.add_argument("--steps", type=int, default=30, help="decoding steps per number of sequences")
    parser.add_argument("--llm-model", default=None, help="local LLM (default: the engine's)")
    parser.add_argument("--out", type=Path, default=RESULTS)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    result = asyncio.run(_measure(args))
    console = Console()
    table = Table(title="Whisper: B utterances one by one vs in one batched call")
    for col in ("utterances", "one by one p50 / p95", "batched p50 / p95", "throughput gain"):
        table.add_column(col)
    for row in result["whisper"]:
        table.add_row(
            str(row["utterances"]),
            _span(row["one_by_one"]),
            _span(row["batched"]),
            f"{row['throughput_gain']:.2f}x",
        )
    console.print(table)
    table = Table(title=f"llama.cpp ({result['llm_model']}): S sequences decoded together")
    for col in ("sequences", "ms per step p50 / p95", "tokens/s in all", "throughput gain"):
        table.add_column(col)
    for row in result["llm"]["decoding"]:
        table.add_row(
            str(row["sequences"]),
            _span(row["step"], digits=1),
            f"{row['tokens_per_s']:.1f}",
            f"{row['throughput_gain']:.2f}x",
        )
    console.print(table)
    table = Table(title=f"llama.cpp prefill: S users' {USER_TOKENS} tokens one by one vs in one batch")
    for col in ("users", "one by one p50 / p95", "batched p50 / p95"):
        table.add_column(col)
    for row in result["llm"]["prefill"]:
        table.add_row(str(row["users"]), _span(row["one_by_one"]), _span(row["batched"]))
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    console.print(f"wrote {args.out}")
    return 0
