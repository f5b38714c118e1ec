"""The llama.cpp build guard: no AMX and no AVX-512 code in the installed library, and a scanner
that really finds such code (checked on tiny libraries compiled here with those instructions)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from parley.engine.models import native

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import build_llama  # noqa: E402

needs_gcc = pytest.mark.skipif(
    shutil.which("gcc") is None or shutil.which("objdump") is None, reason="needs gcc and objdump (binutils)"
)

AMX_C = r"""
#include <immintrin.h>
void tile_probe(const void *src) { _tile_loadd(0, src, 64); _tile_release(); }
"""
AVX512_C = r"""
#include <immintrin.h>
void add16(float *a, const float *b) {
    _mm512_storeu_ps(a, _mm512_add_ps(_mm512_loadu_ps(a), _mm512_loadu_ps(b)));
}
"""
PLAIN_C = "int add(int a, int b) { return a + b; }\n"


def _shared_library(tmp_path: Path, name: str, source: str, *flags: str) -> Path:
    c = tmp_path / f"{name}.c"
    c.write_text(source)
    out = tmp_path / f"lib{name}.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", *flags, str(c), "-o", str(out)], check=True)
    return out


@pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed (make install)"
)
def test_installed_llama_library_is_portable() -> None:
    """What make test guards: a -march=native or AMX build of llama.cpp fails here on any machine."""
    assert native.llama_libraries(), "llama-cpp-python ships no shared libraries?"
    assert native.build_problems() == []
    record = native.build_record()
    assert record is not None and record["level"] in native.LEVEL_FEATURES
    # The level is the best this CPU reports (or lower, if a better one crashed at build time).
    names = [name for name, _ in build_llama.candidate_levels(build_llama.cpu_flags())]
    assert record["level"] in names


def test_guard_refuses_a_build_of_another_level(monkeypatch: pytest.MonkeyPatch) -> None:
    """A native build on an AVX-512 machine compiles in more than its level: the guard says so."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python not installed")
    monkeypatch.setattr(native, "build_record", lambda: {"level": "x86-64-v3"})
    compiled = {n for n, on in native.compiled_features().items() if on}
    problems = native.build_problems()
    if "AVX512" in compiled:
        assert any("AVX-512 instructions in a x86-64-v3 build" in p for p in problems)
        assert any("extra ['AVX512'" in p for p in problems)
    monkeypatch.setattr(native, "build_record", lambda: None)
    assert native.build_problems() == [
        "llama-cpp-python was not built by scripts/build_llama.py (a plain pip build uses -march=native)"
    ]


@needs_gcc
def test_scanner_finds_amx_code(tmp_path: Path) -> None:
    lib = _shared_library(tmp_path, "amx", AMX_C, "-mamx-tile")
    scan = native.scan_library(lib)
    assert scan.amx_instructions >= 2  # tileloadd + tilerelease
    assert any("tile" in e for e in scan.examples)


@needs_gcc
def test_scanner_finds_avx512_code(tmp_path: Path) -> None:
    lib = _shared_library(tmp_path, "avx512", AVX512_C, "-mavx512f")
    assert native.scan_library(lib).zmm_instructions >= 1


@needs_gcc
def test_scanner_passes_plain_code(tmp_path: Path) -> None:
    scan = native.scan_library(_shared_library(tmp_path, "plain", PLAIN_C))
    assert (scan.amx_instructions, scan.zmm_instructions) == (0, 0)


# Flags /proc/cpuinfo shows on the project's two kinds of machine (abridged to what matters).
SAPPHIRE_RAPIDS = {
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "bmi2",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
}
EPYC_ZEN4 = {
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "bmi2",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
}
SANDY_BRIDGE = {"sse4_2", "avx"}


AVX512 = {"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"}
HASWELL = {"sse4_2", "avx", "avx2", "fma", "f16c", "bmi2"}


@pytest.mark.parametrize(
    ("flags", "level"),
    [
        (SAPPHIRE_RAPIDS | AVX512, "x86-64-v4-vnni"),
        (EPYC_ZEN4 | AVX512, "x86-64-v4-vnni"),
        (HASWELL | AVX512, "x86-64-v3"),  # Skylake-X: AVX-512 without VNNI is not worth a level
        (HASWELL, "x86-64-v3"),
        (SANDY_BRIDGE, "avx"),
        ({"sse4_2"}, "sse4.2"),
        (set(), "generic"),
    ],
)
def test_build_level_from_cpu_flags(flags: set[str], level: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARLEY_LLAMA_LEVEL", raising=False)
    assert build_llama.choose_level(flags)[0] == level


def test_build_flags_never_native_or_amx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build_llama, "cpu_flags", lambda: SAPPHIRE_RAPIDS | AVX512)
    monkeypatch.setattr(build_llama.platform, "machine", lambda: "x86_64")
    _, args = build_llama.cmake_args()
    assert "-DGGML_NATIVE=OFF" in args and "-DGGML_NATIVE=ON" not in args
    for option in ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16", "GGML_AVX512_BF16", "GGML_AVX512_VBMI"):
        assert f"-D{option}=OFF" in args
    assert any(a.startswith("-DCMAKE_C_FLAGS=") and "-mno-amx-tile" in a for a in args)
    assert any(a.startswith("-DCMAKE_CXX_FLAGS=") and "-mno-amx-int8" in a for a in args)
    assert "-DLLAVA_BUILD=OFF" in args  # Parley loads no multimodal library
    # CMAKE_ARGS is split like a shell line: the multi-word flag values must survive that.
    import shlex

    assert shlex.split(" ".join(build_llama._quote(a) for a in args)) == args


def test_a_level_that_crashes_falls_back_to_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    """PARLEY_LLAMA_LEVEL and the build-time smoke test walk the same list, best first."""
    monkeypatch.delenv("PARLEY_LLAMA_LEVEL", raising=False)
    names = [n for n, _ in build_llama.candidate_levels(SAPPHIRE_RAPIDS | AVX512)]
    assert names == ["x86-64-v4-vnni", "x86-64-v3", "avx", "sse4.2", "generic"]
    monkeypatch.setenv("PARLEY_LLAMA_LEVEL", "x86-64-v3")
    assert next(n for n, _ in build_llama.candidate_levels(SAPPHIRE_RAPIDS | AVX512)) == "x86-64-v3"
    v3 = dict(build_llama.candidate_levels(HASWELL))["x86-64-v3"]
    assert "-DGGML_AVX512=OFF" in v3 and "-DGGML_AVX2=ON" in v3


def test_build_smoke_test_reports_a_crashing_library(tmp_path: Path) -> None:
    """The build's own proof: an interpreter that dies by a signal is a crash, not a pass."""
    crashing = tmp_path / "python"
    crashing.write_text("#!/bin/sh\nkill -ILL $$\n")
    crashing.chmod(0o755)
    assert build_llama._smoke_test(str(crashing)) == "killed by SIGILL"
    assert build_llama._smoke_test(sys.executable) is None or importlib.util.find_spec("llama_cpp") is None
