"""`parley bench batching` with the real Whisper and LLM: like-for-like figures, JSON written."""

from __future__ import annotations

import json
from pathlib import Path

from parley.bench import batching
from parley.bench.cli import BENCHMARKS


def test_batching_bench_measures_whisper_and_llama_batches(tmp_path: Path) -> None:
    assert "batching" in BENCHMARKS
    out = tmp_path / "batching.json"
    args = type("Args", (), {"reps": 1, "steps": 3, "llm_model": None, "out": out})()
    assert batching.run(args) == 0  # type: ignore[arg-type]
    result = json.loads(out.read_text())
    whisper = result["whisper"]
    assert [row["utterances"] for row in whisper] == list(batching.SIZES)
    # The batched call transcribed the same words as the engine's own path.
    assert all(row["same_words"] for row in whisper)
    for row in whisper:
        assert row["one_by_one"]["p50_ms"] > 0 and row["batched"]["p50_ms"] > 0
    decoding = result["llm"]["decoding"]
    assert [row["sequences"] for row in decoding] == list(batching.SIZES)
    assert decoding[0]["throughput_gain"] == 1.0
    # More sequences per step take longer per step than one (they do more work).
    assert decoding[-1]["step"]["p50_ms"] > decoding[0]["step"]["p50_ms"]
    assert [row["users"] for row in result["llm"]["prefill"]] == list(batching.SIZES)
