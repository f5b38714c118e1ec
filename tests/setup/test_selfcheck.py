"""Model stages are proven in child processes: a native crash becomes a one-line report with a fix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from parley.engine.config import ModelConfig
from parley.engine.models import selfcheck


def _child(code: str, timeout: float = 30.0) -> selfcheck.ChildOutcome:
    return selfcheck._run_child([sys.executable, "-c", code], dict(os.environ), timeout)


def test_a_child_killed_by_sigill_is_reported_with_stage_runtime_and_fix() -> None:
    outcome = _child(
        "import os, signal, sys; print('loading', file=sys.stderr); os.kill(os.getpid(), signal.SIGILL)"
    )
    assert outcome.returncode == -signal.SIGILL
    result = selfcheck.interpret_child("llm", "llama", outcome)
    assert not result.ok
    line = result.describe()
    assert line.startswith("stage llm (llama.cpp) crashed with SIGILL: ")
    assert "instruction" in line and "(last output: loading)" in line
    assert "; fix: " in line and "make rebuild-llama" in line


def test_other_signals_and_exits_say_what_happened() -> None:
    segv = selfcheck.interpret_child(
        "stt", "whisper", _child("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    )
    assert segv.describe().startswith(
        "stage stt (CTranslate2) crashed with SIGSEGV: the CTranslate2 library crashed"
    )
    killed = selfcheck.crash_result("llm", "llama", signal.SIGKILL)
    assert "memory" in killed.problem and killed.fix
    failed = selfcheck.interpret_child(
        "tts", "piper", _child("import sys; sys.exit('voice file unreadable')")
    )
    assert failed.problem.startswith("failed (exit code 1)") and "voice file unreadable" in failed.problem
    hung = selfcheck.interpret_child("vad", "silero", _child("import time; time.sleep(30)", timeout=0.5))
    assert hung.problem.startswith("did not finish within")


def test_a_child_that_reports_its_own_failure_is_believed() -> None:
    said = {
        "stage": "llm",
        "backend": "llama",
        "ok": False,
        "problem": "GGUF file x does not exist",
        "fix": "fix it",
    }
    outcome = _child(f"import sys; print({json.dumps(said)!r}); sys.exit(1)")
    result = selfcheck.interpret_child("llm", "llama", outcome)
    assert (result.problem, result.fix) == ("GGUF file x does not exist", "fix it")


def test_fingerprint_follows_what_decides_the_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = ModelConfig(cache_dir=tmp_path)
    base = selfcheck.fingerprint(cfg)
    assert selfcheck.fingerprint(ModelConfig(cache_dir=tmp_path)) == base
    assert selfcheck.fingerprint(ModelConfig(cache_dir=tmp_path, llm="openai")) != base
    monkeypatch.setenv(selfcheck.INJECT_ENV, "llm:SIGILL")
    assert selfcheck.fingerprint(cfg) != base
    monkeypatch.delenv(selfcheck.INJECT_ENV)
    assert not selfcheck.passed_here(cfg)  # nothing recorded in an empty cache
    selfcheck.record_pass(
        cfg, [selfcheck.StageResult(s, getattr(cfg, s), True) for s in selfcheck.local_stages(cfg)]
    )
    assert selfcheck.passed_here(cfg)
    assert not selfcheck.passed_here(ModelConfig(cache_dir=tmp_path, llm_model_path=tmp_path / "other.gguf"))


def test_remote_llm_needs_no_local_proof() -> None:
    assert selfcheck.local_stages(ModelConfig(llm="openai")) == ["vad", "stt", "tts", "turn"]


# --- through the real commands and real models ---------------------------------------------

PARLEY = [sys.executable, "-m", "parley"]


@pytest.mark.models
def test_parley_models_proves_each_stage_and_reports_a_crash() -> None:
    ok = subprocess.run([*PARLEY, "models"], capture_output=True, text=True, timeout=600, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "llama.cpp build: portable" in ok.stdout and "All models ready" in ok.stdout
    assert selfcheck.passed_here(ModelConfig())

    env = dict(os.environ, **{selfcheck.INJECT_ENV: "llm:SIGILL"})
    bad = subprocess.run(
        [*PARLEY, "models"], capture_output=True, text=True, timeout=600, check=False, env=env
    )
    assert bad.returncode == 1
    assert "✗ stage llm (llama.cpp) crashed with SIGILL: " in bad.stdout
    assert "fix: rebuild llama.cpp portably: make rebuild-llama" in bad.stdout
    assert "Illegal instruction" not in bad.stdout + bad.stderr  # no bare signal from the parent
    assert selfcheck.passed_here(ModelConfig())  # the failed run did not spoil the good record


@pytest.mark.models
@pytest.mark.parametrize("command", ["engine", "serve"])
def test_engine_and_serve_refuse_to_start_on_a_crashing_stage(command: str) -> None:
    env = dict(os.environ, **{selfcheck.INJECT_ENV: "llm:SIGILL"})
    env.pop("OPENAI_API_KEY", None)
    done = subprocess.run(
        [*PARLEY, command, "--port", "0"], capture_output=True, text=True, timeout=600, check=False, env=env
    )
    assert done.returncode == 1
    assert "stage llm (llama.cpp) crashed with SIGILL" in done.stderr
    assert "make rebuild-llama" in done.stderr
