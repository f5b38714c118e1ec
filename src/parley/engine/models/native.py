"""What the installed llama.cpp library was compiled to execute.

Parley builds llama-cpp-python itself (``scripts/build_llama.py``) for a named x86-64 level and
never with AMX: ggml's AMX matmul faults with SIGILL on VMs that advertise AMX. The build script
records the level in ``<venv>/share/parley/llama-build.json``. These checks read the built
library, so a build made another way (for instance a plain ``pip install``, which uses
``-march=native``) is caught on any machine, not only on the Intel machines where it crashes:

* no AMX tile instruction anywhere in the shared libraries (``objdump -d``);
* no AVX-512 register (``zmm``) unless the recorded level includes AVX-512;
* the CPU features ggml reports as compiled in are exactly those of the recorded level; a
  native build adds others (AVX512_BF16 and AVX512_VBMI on AMD Zen 4, AMX on Sapphire Rapids).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

# Every AMX mnemonic objdump prints starts with one of these (tileloadd, tileloaddt1, tilestored,
# tilezero, tilerelease, ldtilecfg, sttilecfg, tdpbssd, tdpbf16ps, tdpfp16ps, ...).
_AMX = re.compile(r"\t(tile\w+|ldtilecfg|sttilecfg|tdp\w+)\s")
_ZMM = re.compile(r"%zmm\d+")
# The ISA features ggml reports as compiled in, for each level of scripts/build_llama.py.
_V3 = {"SSE3", "SSSE3", "AVX", "AVX2", "F16C", "FMA", "BMI2"}
LEVEL_FEATURES: dict[str, set[str]] = {
    "x86-64-v4-vnni": _V3 | {"AVX512", "AVX512_VNNI"},
    "x86-64-v3": _V3,
    "avx": {"SSE3", "SSSE3", "AVX"},
    "sse4.2": {"SSE3", "SSSE3"},
    "generic": set(),
}
# Reported features that are not instruction sets (llamafile kernels, OpenMP, weight repacking).
_NOT_ISA = {"LLAMAFILE", "OPENMP", "REPACK", "KLEIDIAI", "ACCELERATE", "BLAS"}
# Never, at any level.
FORBIDDEN_FEATURES = ("AMX_INT8", "AMX_BF16", "AMX_TILE")


@dataclass
class LibraryScan:
    path: Path
    amx_instructions: int
    zmm_instructions: int
    examples: list[str] = field(default_factory=list)


def llama_library_dir() -> Path | None:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
    return lib if lib.is_dir() else None


def llama_libraries() -> list[Path]:
    """Each distinct shared library once (the wheel ships ``libx.so``, ``.so.0``, ``.so.0.y.z`` as copies)."""
    lib = llama_library_dir()
    if lib is None:
        return []
    unique: dict[str, Path] = {}
    for path in sorted(lib.iterdir(), key=lambda p: len(p.name)):
        if ".so" in path.name and path.is_file():
            unique.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), path)
    return sorted(unique.values())


def scan_library(path: Path) -> LibraryScan:
    """Count AMX and AVX-512 instructions in one shared library's code."""
    objdump = shutil.which("objdump")
    if objdump is None:
        raise RuntimeError("objdump not found: install binutils (Debian: apt-get install binutils)")
    amx = zmm = 0
    examples: list[str] = []
    with subprocess.Popen(
        [objdump, "-d", "--no-show-raw-insn", str(path)], stdout=subprocess.PIPE, text=True, errors="replace"
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if _AMX.search(line):
                amx += 1
                if len(examples) < 3:
                    examples.append(line.strip())
            elif "zmm" in line and _ZMM.search(line):
                zmm += 1
                if len(examples) < 3:
                    examples.append(line.strip())
    return LibraryScan(path, amx, zmm, examples)


def compiled_features() -> dict[str, bool]:
    """The CPU features ggml says it was compiled with (``llama_print_system_info``)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    return {name: value == "1" for name, value in re.findall(r"(\w+) = (\d)", info)}


def build_record() -> dict | None:
    """What scripts/build_llama.py wrote down about the installed build (None: not built by it)."""
    try:
        return json.loads((Path(sys.prefix) / "share" / "parley" / "llama-build.json").read_text())
    except (OSError, ValueError):
        return None


def build_problems() -> list[str]:
    """Why the installed llama.cpp build breaks Parley's portability contract (empty: it does not)."""
    libs = llama_libraries()
    if not libs:
        return ["llama-cpp-python is not installed (make install)"]
    record = build_record()
    level = record.get("level") if record else None
    if level not in LEVEL_FEATURES:
        return [
            "llama-cpp-python was not built by scripts/build_llama.py (a plain pip build uses -march=native)"
        ]
    problems = []
    avx512 = "AVX512" in LEVEL_FEATURES[level]
    for scan in map(scan_library, libs):
        if scan.amx_instructions:
            problems.append(
                f"{scan.path.name}: {scan.amx_instructions} AMX instructions, e.g. {scan.examples[0]}"
            )
        if scan.zmm_instructions and not avx512:
            problems.append(
                f"{scan.path.name}: {scan.zmm_instructions} AVX-512 instructions in a {level} build"
            )
    compiled = {name for name, on in compiled_features().items() if on} - _NOT_ISA
    problems += [f"compiled with {name}" for name in FORBIDDEN_FEATURES if name in compiled]
    if compiled != LEVEL_FEATURES[level]:
        extra, missing = sorted(compiled - LEVEL_FEATURES[level]), sorted(LEVEL_FEATURES[level] - compiled)
        problems.append(f"compiled features differ from level {level}: extra {extra}, missing {missing}")
    return problems


def main() -> int:
    """``python -m parley.engine.models.native``: exit 1 and say why if the build is not portable."""
    problems = build_problems()
    if problems:
        print("llama.cpp is not built portably:", *problems, sep="\n  ", file=sys.stderr)
        print("fix: make rebuild-llama  (scripts/build_llama.py --rebuild)", file=sys.stderr)
        return 1
    features = [name for name, on in compiled_features().items() if on]
    level = (build_record() or {}).get("level")
    print(f"llama.cpp build is portable: level {level}, no AMX; compiled with {' '.join(features)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
