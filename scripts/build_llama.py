#!/usr/bin/env python3
"""Build and install llama-cpp-python with CPU flags chosen on purpose.

Why not the default build: llama-cpp-python compiles llama.cpp with ``-march=native``, so the
compiler enables every extension the CPU *reports*. On Intel Xeon (Sapphire Rapids) VMs that
includes AMX, and ggml's AMX matmul then dies with SIGILL on the first multi-token prompt even
though the CPU flag is present. So the build:

* never uses ``-march=native`` (``GGML_NATIVE=OFF``);
* picks one of a few well-known x86-64 levels from what this CPU reports: ``x86-64-v3``
  (AVX2, FMA, F16C, BMI2: every x86 CPU since Haswell/Zen 1) or, below that, AVX or SSE4.2.
  AVX-512 is left out: on this project's machines it bought nothing measurable for the model
  sizes Parley runs (decode is memory bound; see README "Set-up"), and it is the next family
  that hypervisors advertise unevenly;
* switches AMX off twice: the ggml options and ``-mno-amx-*`` compiler flags (explicit
  ``-mno-*`` wins over any ``-march`` in GCC and Clang);
* builds only what Parley loads: libllama and ggml (no multimodal ``mtmd`` library; llama.cpp's
  tools, examples, tests and server are already off when it is built as a subproject).

The wheel is cached under ``$PARLEY_CACHE_DIR`` (default ``~/.cache/parley``, beside the models) keyed by version and
flags, so reruns and fresh clones on the same machine install in seconds. ``parley models``
and the test suite check the installed library itself (see ``parley.engine.models.native``).
"""

from __future__ import annotations

import argparse
import hashlib
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
    "-DGGML_AVX512=OFF",
    "-DGGML_AVX512_VBMI=OFF",
    "-DGGML_AVX512_VNNI=OFF",
    "-DGGML_AVX512_BF16=OFF",
    "-DGGML_AVX_VNNI=OFF",
    "-DLLAVA_BUILD=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DCMAKE_BUILD_TYPE=Release",
    f"-DCMAKE_C_FLAGS={NO_AMX}",
    f"-DCMAKE_CXX_FLAGS={NO_AMX}",
]
# x86 levels, best first: (name, CPU flags required, cmake switches)
X86_LEVELS: list[tuple[str, set[str], list[str]]] = [
    (
        "x86-64-v3",
        {"avx", "avx2", "fma", "f16c", "bmi2", "sse4_2"},
        ["-DGGML_SSE42=ON", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON", "-DGGML_BMI2=ON"],
    ),
    (
        "avx",
        {"avx", "sse4_2"},
        ["-DGGML_SSE42=ON", "-DGGML_AVX=ON", "-DGGML_AVX2=OFF", "-DGGML_FMA=OFF", "-DGGML_F16C=OFF", "-DGGML_BMI2=OFF"],
    ),
    (
        "sse4.2",
        {"sse4_2"},
        ["-DGGML_SSE42=ON", "-DGGML_AVX=OFF", "-DGGML_AVX2=OFF", "-DGGML_FMA=OFF", "-DGGML_F16C=OFF", "-DGGML_BMI2=OFF"],
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


def choose_level(flags: set[str]) -> tuple[str, list[str]]:
    forced = os.environ.get("PARLEY_LLAMA_LEVEL")
    for name, required, switches in X86_LEVELS:
        if forced == name or (forced is None and required <= flags):
            return name, switches
    if forced:
        raise SystemExit(f"PARLEY_LLAMA_LEVEL={forced!r} is not one of {[n for n, _, _ in X86_LEVELS]}")
    return "generic", ["-DGGML_SSE42=OFF", "-DGGML_AVX=OFF", "-DGGML_AVX2=OFF", "-DGGML_FMA=OFF", "-DGGML_F16C=OFF", "-DGGML_BMI2=OFF"]


def cmake_args() -> tuple[str, list[str]]:
    if platform.machine() not in ("x86_64", "AMD64"):
        # ARM and others: llama.cpp's defaults are fine except native detection, which we keep
        # off for the same reason as on x86 (a VM may report what it does not grant).
        return platform.machine(), [a for a in COMMON if not a.startswith(("-DGGML_AVX", "-DGGML_AMX", "-DCMAKE_C"))]
    level, switches = choose_level(cpu_flags())
    return level, [*COMMON, *switches]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter of the target venv")
    parser.add_argument("--print", action="store_true", help="print the chosen level and CMake arguments")
    parser.add_argument("--rebuild", action="store_true", help="ignore the cached wheel")
    args = parser.parse_args()
    level, cmake = cmake_args()
    key = hashlib.sha256(" ".join([VERSION, *cmake]).encode()).hexdigest()[:12]
    if args.print:
        print(f"level {level}, cache key {key}")
        print("\n".join(cmake))
        return 0
    cache = _cache_dir() / "wheels" / f"llama-{VERSION}-{level}-{key}"
    wheels = sorted(cache.glob("llama_cpp_python-*.whl")) if not args.rebuild else []
    if not wheels:
        print(f"building llama-cpp-python {VERSION} for {level} (no -march=native, no AMX); this takes a few minutes")
        env = dict(os.environ, CMAKE_ARGS=" ".join(_quote(a) for a in cmake))
        env["CMAKE_BUILD_PARALLEL_LEVEL"] = str(os.cpu_count() or 2)
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [args.python, "-m", "pip", "wheel", "-q", "--no-deps", "--no-cache-dir", "--no-binary", "llama-cpp-python",
                 "-w", tmp, f"llama-cpp-python=={VERSION}"],
                check=True,
                env=env,
            )
            cache.mkdir(parents=True, exist_ok=True)
            for wheel in Path(tmp).glob("*.whl"):
                shutil.copy2(wheel, cache / wheel.name)
            (cache / "cmake-args.txt").write_text("\n".join(cmake) + "\n")
        print(f"built in {time.monotonic() - started:.0f} s -> {cache}")
        wheels = sorted(cache.glob("llama_cpp_python-*.whl"))
    wheel = wheels[-1]
    subprocess.run([args.python, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", str(wheel)], check=True)
    # The [server] extra's pure-Python dependencies (the wheel was installed without deps).
    subprocess.run([args.python, "-m", "pip", "install", "-q", f"{wheel}{EXTRAS}"], check=True)
    print(f"installed llama-cpp-python {VERSION} ({level}) from {wheel.name}")
    return 0


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
