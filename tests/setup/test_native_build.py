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

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("objdump") is None,
                               reason="needs gcc and objdump (binutils)")

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


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed (make install)")
def test_installed_llama_library_is_portable() -> None:
    """What make test guards: a -march=native or AMX build of llama.cpp fails here on any machine."""
    assert native.llama_libraries(), "llama-cpp-python ships no shared libraries?"
    assert native.build_problems() == []
    features = native.compiled_features()
    assert not any(features.get(name) for name in native.FORBIDDEN_FEATURES), features


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
SAPPHIRE_RAPIDS = {"sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512bw", "avx512_vnni",
                   "amx_tile", "amx_int8", "amx_bf16"}
EPYC_ZEN4 = {"sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"}
SANDY_BRIDGE = {"sse4_2", "avx"}


@pytest.mark.parametrize(("flags", "level"), [
    (SAPPHIRE_RAPIDS, "x86-64-v3"), (EPYC_ZEN4, "x86-64-v3"), (SANDY_BRIDGE, "avx"), ({"sse4_2"}, "sse4.2"),
    (set(), "generic"),
])
def test_build_level_from_cpu_flags(flags: set[str], level: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARLEY_LLAMA_LEVEL", raising=False)
    assert build_llama.choose_level(flags)[0] == level


def test_build_flags_never_native_or_amx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build_llama, "cpu_flags", lambda: SAPPHIRE_RAPIDS)
    monkeypatch.setattr(build_llama.platform, "machine", lambda: "x86_64")
    _, args = build_llama.cmake_args()
    assert "-DGGML_NATIVE=OFF" in args and "-DGGML_NATIVE=ON" not in args
    for option in ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16", "GGML_AVX512"):
        assert f"-D{option}=OFF" in args
    assert any(a.startswith("-DCMAKE_C_FLAGS=") and "-mno-amx-tile" in a for a in args)
    assert any(a.startswith("-DCMAKE_CXX_FLAGS=") and "-mno-amx-int8" in a for a in args)
    assert "-DLLAVA_BUILD=OFF" in args  # Parley loads no multimodal library
    # CMAKE_ARGS is split like a shell line: the multi-word flag values must survive that.
    import shlex

    assert shlex.split(" ".join(build_llama._quote(a) for a in args)) == args
