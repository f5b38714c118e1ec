"""What the installed llama.cpp library was compiled to execute.

Parley builds llama-cpp-python itself (``scripts/build_llama.py``) for a fixed x86-64 level and
never with AMX: ggml's AMX matmul faults with SIGILL on VMs that advertise AMX. These checks read
the built library, so a build made another way (for instance a plain ``pip install`` that uses
``-march=native``) is caught on any machine, not only on the Intel machines where it crashes:

* no AMX tile instruction anywhere in the shared libraries (``objdump -d``);
* no AVX-512 register (``zmm``) either: a native build on an AVX-512 machine (all of this
  project's machines, AMD included) uses them, the portable build does not;
* the CPU features ggml reports as compiled in match that contract.
"""

from __future__ import annotations

import hashlib
import importlib.util
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
# Compiled-in features that the portable build must not have.
FORBIDDEN_FEATURES = ("AMX_INT8", "AMX_BF16", "AMX_TILE", "AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16")


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
    with subprocess.Popen([objdump, "-d", "--no-show-raw-insn", str(path)], stdout=subprocess.PIPE,
                          text=True, errors="replace") as proc:
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


def build_problems() -> list[str]:
    """Why the installed llama.cpp build breaks Parley's portability contract (empty: it does not)."""
    libs = llama_libraries()
    if not libs:
        return ["llama-cpp-python is not installed (make install)"]
    problems = []
    for scan in map(scan_library, libs):
        if scan.amx_instructions:
            problems.append(f"{scan.path.name}: {scan.amx_instructions} AMX instructions, e.g. {scan.examples[0]}")
        if scan.zmm_instructions:
            problems.append(f"{scan.path.name}: {scan.zmm_instructions} AVX-512 instructions (a -march=native build?)")
    features = compiled_features()
    problems += [f"compiled with {name}" for name in FORBIDDEN_FEATURES if features.get(name)]
    return problems


def main() -> int:
    """``python -m parley.engine.models.native``: exit 1 and say why if the build is not portable."""
    problems = build_problems()
    if problems:
        print("llama.cpp is not built portably:", *problems, sep="\n  ", file=sys.stderr)
        print("fix: make rebuild-llama  (scripts/build_llama.py --rebuild)", file=sys.stderr)
        return 1
    features = [name for name, on in compiled_features().items() if on]
    print(f"llama.cpp build is portable: no AMX, no AVX-512; compiled with {' '.join(features)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
