"""Choose, load and warm up one backend per stage from :class:`ModelConfig`.

Loading happens in worker threads (the stages load concurrently), each
model is warmed up before it is handed out (the first real request must not
pay for lazy initialisation), and anything missing surfaces as a
:class:`ModelUnavailable` that says what is missing and how to fix it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parley.engine.config import ModelConfig
from parley.engine.models import assets
from parley.engine.models.base import (
    EndOfTurnModel,
    LanguageModel,
    SpeechToText,
    TextToSpeech,
    VoiceActivityDetector,
)
from parley.engine.models.errors import ModelUnavailable
from parley.engine.models.memory import limit_malloc_arenas, release_freed_memory

__all__ = [
    "BACKENDS",
    "STAGES",
    "Backend",
    "LoadedStage",
    "ModelSet",
    "ModelUnavailable",
    "backend_names",
    "load_models",
    "load_stage",
]

log = logging.getLogger(__name__)

STAGES = ("vad", "stt", "llm", "tts", "turn")
_ENV = {
    "vad": "PARLEY_VAD",
    "stt": "PARLEY_STT",
    "llm": "PARLEY_LLM",
    "tts": "PARLEY_TTS",
    "turn": "PARLEY_TURN",
}

Progress = Callable[[str, str], None]  # (stage, message)
Loader = Callable[[ModelConfig], tuple[Any, str, int]]  # → (model, source, bytes on disk); runs in a thread
WarmupFailure = Callable[[ModelConfig, Exception], ModelUnavailable]


@dataclass(frozen=True)
class Backend:
    """One backend of one stage: how to load it, what it needs, and what it can do.

    Adding a backend is one model class plus one entry in :data:`BACKENDS`;
    the CLI choices and the error messages follow from the entry.
    """

    stage: str
    name: str
    load: Loader
    # Environment variables (ModelConfig fields) the backend reads.
    settings: tuple[str, ...] = ()
    # Importable module → how to install it, where that is not ``pip install <module>``.
    pip: Mapping[str, str] = field(default_factory=dict)
    # Capabilities: the model has a warmup() (sync runs in a thread, async is awaited) and a close().
    warms_up: bool = False
    closes: bool = False
    # A failed warm-up means the backend is unavailable, not broken (a remote server not answering).
    warmup_failure: WarmupFailure | None = None

    def how_to_install(self, module: str) -> str:
        return self.pip.get(module, f"pip install {module}" if module else "reinstall parley")

    async def warm_up(self, model: Any) -> None:
        if not self.warms_up:
            return
        if asyncio.iscoroutinefunction(model.warmup):
            await model.warmup()
        else:
            await asyncio.to_thread(model.warmup)

    async def close(self, model: Any) -> None:
        if self.closes:
            result = model.close()
            if asyncio.iscoroutine(result):
                await result


@dataclass
class LoadedStage:
    stage: str
    backend: str
    model: Any
    entry: Backend
    source: str  # file, directory or URL the weights come from
    size: int  # bytes on disk (0 for a remote server)
    load_seconds: float
    warmup_seconds: float


@dataclass
class ModelSet:
    vad: VoiceActivityDetector
    stt: SpeechToText
    llm: LanguageModel
    tts: TextToSpeech
    # semantic_vad's end-of-turn model; None (transcript-only decisions) in a set built by hand.
    turn: EndOfTurnModel | None = None
    stages: dict[str, LoadedStage] = field(default_factory=dict)

    async def aclose(self) -> None:
        for loaded in self.stages.values():
            await loaded.entry.close(loaded.model)


async def load_models(cfg: ModelConfig, progress: Progress | None = None) -> ModelSet:
    """Load and warm up all the stages concurrently; raises :class:`ModelUnavailable`."""
    results = await asyncio.gather(*(load_stage(s, cfg, progress) for s in STAGES), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        for extra in errors[1:]:
            log.error("model load failed: %s", extra)
        unavailable = [e for e in errors if isinstance(e, ModelUnavailable)]
        raise (unavailable or errors)[0]
    stages = {r.stage: r for r in results if isinstance(r, LoadedStage)}
    release_freed_memory()  # loading parses whole model files into temporary buffers
    return ModelSet(
        vad=stages["vad"].model,
        stt=stages["stt"].model,
        llm=stages["llm"].model,
        tts=stages["tts"].model,
        turn=stages["turn"].model,
        stages=stages,
    )


async def load_stage(stage: str, cfg: ModelConfig, progress: Progress | None = None) -> LoadedStage:
    """Load and warm up one stage's configured backend."""
    limit_malloc_arenas()  # before the models' threads allocate (see memory.py)
    backend = str(getattr(cfg, stage)).lower()
    entry = BACKENDS.get((stage, backend))
    if entry is None:
        raise ModelUnavailable(
            stage,
            f"unknown {stage} backend {backend!r}",
            f"set {_ENV[stage]} to one of: {', '.join(backend_names(stage))}",
        )
    report = progress or (lambda _s, _m: None)
    report(stage, f"loading {backend}")
    started = time.perf_counter()
    try:
        model, source, size = await asyncio.to_thread(entry.load, cfg)
    except ModelUnavailable:
        raise
    except ImportError as exc:
        module = (exc.name or "").split(".")[0]
        raise ModelUnavailable(
            stage, f"Python package {module or exc!s} is not importable", entry.how_to_install(module)
        ) from exc
    loaded = time.perf_counter() - started
    report(stage, "warming up")
    started = time.perf_counter()
    try:
        await entry.warm_up(model)
    except Exception as exc:
        if entry.warmup_failure is not None:
            raise entry.warmup_failure(cfg, exc) from exc
        raise
    warmed = time.perf_counter() - started
    report(stage, f"ready ({loaded + warmed:.1f} s)")
    return LoadedStage(stage, backend, model, entry, source, size, loaded, warmed)


def backend_names(stage: str) -> list[str]:
    return [name for (s, name) in BACKENDS if s == stage]


# --- loaders (run in worker threads) -------------------------------------------------


def _load_silero(cfg: ModelConfig) -> tuple[Any, str, int]:
    from parley.engine.models.vad_silero import SileroVad

    path = assets.silero_model_path()
    return SileroVad(path), str(path), path.stat().st_size


def _load_whisper(cfg: ModelConfig) -> tuple[Any, str, int]:
    from parley.engine.models.stt_whisper import WhisperSTT

    model_dir = assets.prepare_whisper(Path(cfg.cache_dir))  # a no-op once prepared
    stt = WhisperSTT(model_dir, language=cfg.stt_language, threads=cfg.stt_threads)
    return stt, str(model_dir), assets.dir_size(model_dir)


def _load_llama(cfg: ModelConfig) -> tuple[Any, str, int]:
    from parley.engine.models import llm_catalog
    from parley.engine.models.llm_llama import FEW_SHOT, LlamaLLM

    if cfg.llm_model_path is not None:  # any chat GGUF: treated like the tiny model (few-shot, routed tools)
        path = Path(cfg.llm_model_path)
        if not path.is_file():
            raise ModelUnavailable(
                "llm", f"GGUF file {path} does not exist", "fix PARLEY_LLM_MODEL_PATH or unset it"
            )
        llm = LlamaLLM(path, n_threads=cfg.llm_threads, n_ctx=cfg.llm_context)
        return llm, str(path), path.stat().st_size
    model = llm_catalog.get(cfg.llm_model)
    path = llm_catalog.prepare(Path(cfg.cache_dir), model)  # joins and verifies once; then a stat
    llm = LlamaLLM(
        path,
        n_threads=cfg.llm_threads,
        n_ctx=cfg.llm_context,
        few_shot=FEW_SHOT if model.needs_few_shot else (),
        decides_tools=model.decides_tools,
    )
    return llm, str(path), path.stat().st_size


def _load_openai(cfg: ModelConfig) -> tuple[Any, str, int]:
    from parley.engine.models.llm_openai import OpenAICompatibleLLM

    llm = OpenAICompatibleLLM(base_url=cfg.llm_base_url, api_key=cfg.llm_api_key, model=cfg.llm_model)
    return llm, f"{cfg.llm_base_url or 'https://api.openai.com/v1'} ({llm.model})", 0


def _load_piper(cfg: ModelConfig) -> tuple[Any, str, int]:
    from parley.engine.models.tts_piper import PiperTTS

    if cfg.tts_voice_path is not None:
        onnx = Path(cfg.tts_voice_path)
        config = onnx.with_name(onnx.name + ".json")
        for p in (onnx, config):
            if not p.is_file():
                raise ModelUnavailable(
                    "tts", f"Piper voice file {p} does not exist", "fix PARLEY_TTS_VOICE or unset it"
                )
    else:
        onnx, config = assets.piper_voice_files()
    try:
        load_path = assets.prepare_piper_alignment(Path(cfg.cache_dir), onnx)
    except (OSError, ValueError) as exc:  # read-only cache, unusual graph: estimated timings
        log.warning("piper: no duration output (%s); word timings will be estimated", exc)
        load_path = onnx
    tts = PiperTTS(onnx, config, load_path=load_path)
    return tts, str(onnx), onnx.stat().st_size


def _load_openai_stt(cfg: ModelConfig) -> tuple[Any, str, int]:
    from parley.engine.models.stt_openai import OpenAICompatibleSTT

    stt = OpenAICompatibleSTT(
        base_url=cfg.stt_base_url, api_key=cfg.stt_api_key, model=cfg.stt_model, language=cfg.stt_language
    )
    return stt, f"{cfg.stt_base_url or 'https://api.openai.com/v1'} ({stt.model})", 0


def _load_openai_tts(cfg: ModelConfig) -> tuple[Any, str, int]:
    from parley.engine.models.tts_openai import OpenAICompatibleTTS

    tts = OpenAICompatibleTTS(
        base_url=cfg.tts_base_url, api_key=cfg.tts_api_key, model=cfg.tts_model, voice=cfg.tts_remote_voice
    )
    return tts, f"{cfg.tts_base_url or 'https://api.openai.com/v1'} ({tts.model})", 0


def _load_smart_turn(cfg: ModelConfig) -> tuple[Any, str, int]:
    from parley.engine.models.turn_smart import SmartTurn, model_path

    path = model_path()  # pinned pipecat-ai wheel, sha256 checked
    return SmartTurn(path), str(path), path.stat().st_size


def _openai_unreachable(cfg: ModelConfig, exc: Exception) -> ModelUnavailable:
    return ModelUnavailable(
        "llm",
        f"no OpenAI-compatible server answering at {cfg.llm_base_url or 'the default OpenAI URL'} ({exc})",
        "start the server, or set " + " / ".join(OPENAI_LLM.settings),
    )


def _server_unreachable(
    stage: str, url: str | None, settings: tuple[str, ...], exc: Exception
) -> ModelUnavailable:
    return ModelUnavailable(
        stage,
        f"no OpenAI-compatible server answering at {url or 'the default OpenAI URL'} ({exc})",
        "start the server, or set " + " / ".join(settings),
    )


_STT_SETTINGS = ("PARLEY_STT_BASE_URL", "PARLEY_STT_API_KEY", "PARLEY_STT_MODEL", "PARLEY_STT_LANGUAGE")
_TTS_SETTINGS = ("PARLEY_TTS_BASE_URL", "PARLEY_TTS_API_KEY", "PARLEY_TTS_MODEL", "PARLEY_TTS_REMOTE_VOICE")

# The heavy stages on another server (an inference node: another Parley engine, speaches, vLLM…).
OPENAI_STT = Backend(
    "stt",
    "openai",
    _load_openai_stt,
    settings=_STT_SETTINGS,
    warms_up=True,
    closes=True,
    warmup_failure=lambda cfg, exc: _server_unreachable("stt", cfg.stt_base_url, _STT_SETTINGS, exc),
)
OPENAI_TTS = Backend(
    "tts",
    "openai",
    _load_openai_tts,
    settings=_TTS_SETTINGS,
    warms_up=True,
    closes=True,
    warmup_failure=lambda cfg, exc: _server_unreachable("tts", cfg.tts_base_url, _TTS_SETTINGS, exc),
)

OPENAI_LLM = Backend(
    "llm",
    "openai",
    _load_openai,
    settings=("PARLEY_LLM_BASE_URL", "PARLEY_LLM_API_KEY", "PARLEY_LLM_MODEL"),
    warms_up=True,
    closes=True,
    warmup_failure=_openai_unreachable,
)

BACKENDS: dict[tuple[str, str], Backend] = {
    (b.stage, b.name): b
    for b in (
        Backend("vad", "silero", _load_silero, warms_up=True),
        Backend(
            "stt",
            "whisper",
            _load_whisper,
            settings=("PARLEY_STT_LANGUAGE", "PARLEY_STT_THREADS"),
            pip={"faster_whisper": "pip install faster-whisper", "ctranslate2": "pip install faster-whisper"},
            warms_up=True,
            closes=True,
        ),
        Backend(
            "llm",
            "llama",
            _load_llama,
            settings=(
                "PARLEY_LLM_MODEL",
                "PARLEY_LLM_MODEL_PATH",
                "PARLEY_LLM_THREADS",
                "PARLEY_LLM_CONTEXT",
            ),
            pip={
                "llama_cpp": "pip install 'llama-cpp-python==0.3.36'  (builds from source, ~5 min; or: make install)"
            },
            warms_up=True,
        ),
        OPENAI_LLM,
        OPENAI_STT,
        Backend(
            "tts",
            "piper",
            _load_piper,
            settings=("PARLEY_TTS_VOICE",),
            pip={"piper": "pip install piper-tts"},
            warms_up=True,
            closes=True,
        ),
        OPENAI_TTS,
        Backend("turn", "smart-turn", _load_smart_turn, warms_up=True),
    )
}
