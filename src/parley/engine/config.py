"""Engine configuration: models, limits and network settings.

Every field has a sensible local default and an environment variable, so
``parley engine`` works with no flags and deployments configure by env.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _env_int(name: str, default: int) -> int:
    value = _env(name)
    return int(value) if value is not None else default


def _env_bool(name: str, default: bool) -> bool:
    value = _env(name)
    return default if value is None else value.lower() in ("1", "true", "yes", "on")


def default_cache_dir() -> Path:
    base = _env("PARLEY_CACHE_DIR") or os.path.join(
        _env("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "parley"
    )
    return Path(base)


@dataclass
class ModelConfig:
    """Which backend serves each stage, and its options."""

    cache_dir: Path = field(default_factory=default_cache_dir)
    vad: str = field(default_factory=lambda: _env("PARLEY_VAD", "silero") or "silero")
    stt: str = field(default_factory=lambda: _env("PARLEY_STT", "whisper") or "whisper")
    stt_language: str | None = field(default_factory=lambda: _env("PARLEY_STT_LANGUAGE", "en"))
    stt_threads: int = field(default_factory=lambda: _env_int("PARLEY_STT_THREADS", 2))
    # For stt == "openai": any OpenAI-compatible /v1/audio/transcriptions (another Parley engine,
    # speaches, vLLM, OpenAI itself).
    stt_base_url: str | None = field(default_factory=lambda: _env("PARLEY_STT_BASE_URL"))
    stt_api_key: str | None = field(default_factory=lambda: _env("PARLEY_STT_API_KEY"))
    stt_model: str | None = field(default_factory=lambda: _env("PARLEY_STT_MODEL"))
    llm: str = field(default_factory=lambda: _env("PARLEY_LLM", "llama") or "llama")
    # semantic_vad's end-of-turn model (smart-turn v3.2 from the pinned pipecat-ai wheel).
    turn: str = field(default_factory=lambda: _env("PARLEY_TURN", "smart-turn") or "smart-turn")
    llm_model_path: Path | None = field(
        default_factory=lambda: Path(p) if (p := _env("PARLEY_LLM_MODEL_PATH")) else None
    )
    llm_threads: int = field(default_factory=lambda: _env_int("PARLEY_LLM_THREADS", 2))
    llm_context: int = field(default_factory=lambda: _env_int("PARLEY_LLM_CONTEXT", 2048))
    # For llm == "openai": any OpenAI-compatible chat-completions server (Ollama, vLLM, llama.cpp server…).
    llm_base_url: str | None = field(default_factory=lambda: _env("PARLEY_LLM_BASE_URL"))
    llm_api_key: str | None = field(default_factory=lambda: _env("PARLEY_LLM_API_KEY"))
    llm_model: str | None = field(default_factory=lambda: _env("PARLEY_LLM_MODEL"))
    tts: str = field(default_factory=lambda: _env("PARLEY_TTS", "piper") or "piper")
    tts_voice_path: Path | None = field(
        default_factory=lambda: Path(p) if (p := _env("PARLEY_TTS_VOICE")) else None
    )
    # For tts == "openai": any OpenAI-compatible /v1/audio/speech that streams response_format "pcm".
    tts_base_url: str | None = field(default_factory=lambda: _env("PARLEY_TTS_BASE_URL"))
    tts_api_key: str | None = field(default_factory=lambda: _env("PARLEY_TTS_API_KEY"))
    tts_model: str | None = field(default_factory=lambda: _env("PARLEY_TTS_MODEL"))
    # The server's voice name for every session; unset: the session's own voice (alloy, cedar…).
    tts_remote_voice: str | None = field(default_factory=lambda: _env("PARLEY_TTS_REMOTE_VOICE"))


@dataclass
class EngineConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    # With no key, only loopback clients are accepted (see host/auth.py).
    api_key: str | None = field(default_factory=lambda: _env("PARLEY_ENGINE_KEY"))
    models: ModelConfig = field(default_factory=ModelConfig)

    # Limits
    max_message_bytes: int = field(
        default_factory=lambda: _env_int("PARLEY_MAX_MESSAGE_BYTES", 16 * 1024 * 1024)
    )
    max_session_seconds: int = field(default_factory=lambda: _env_int("PARLEY_MAX_SESSION_SECONDS", 3600))
    max_sessions: int = field(default_factory=lambda: _env_int("PARLEY_MAX_SESSIONS", 16))
    # Sent as Retry-After (and in the close reason) when a session is refused at capacity.
    retry_after_seconds: int = field(default_factory=lambda: _env_int("PARLEY_RETRY_AFTER_S", 5))
    # A model stage (LLM, TTS) silent for longer fails its reply: status "failed", the stage named.
    stage_timeout_seconds: float = field(default_factory=lambda: float(_env("PARLEY_STAGE_TIMEOUT_S") or 60))
    max_input_buffer_seconds: int = field(
        default_factory=lambda: _env_int("PARLEY_MAX_INPUT_BUFFER_SECONDS", 600)
    )
    client_secret_default_ttl: int = 600

    # Several nodes behind one load balancer (see deploy/README.md)
    # ek_ secrets are HMAC-signed with this key: nodes sharing it accept each other's secrets
    # without shared state. Unset: a random key per process (secrets work on this node only).
    node_key: str | None = field(default_factory=lambda: _env("PARLEY_NODE_KEY"))
    # This node's name in /readyz (default: the host name).
    node_id: str | None = field(default_factory=lambda: _env("PARLEY_NODE_ID"))
    # On SIGTERM, sessions get this long to end by themselves; then they are closed (1001).
    drain_seconds: float = field(default_factory=lambda: float(_env("PARLEY_DRAIN_SECONDS") or 30))
    # A TCP port answering HAProxy's agent-check with this node's weight (0 = off).
    agent_port: int = field(default_factory=lambda: _env_int("PARLEY_AGENT_PORT", 0))

    # Turn detection tuning (not part of the protocol)
    vad_min_speech_ms: int = field(default_factory=lambda: _env_int("PARLEY_VAD_MIN_SPEECH_MS", 64))
    speculative: bool = field(default_factory=lambda: _env_bool("PARLEY_SPECULATIVE", True))
    # How far into a pause speculative transcription (and the reply) starts. Earlier answers
    # sooner; a pause that turns out to be mid-sentence wastes one STT run. Silero decides per
    # 32 ms frame, so 50 ms is the second silent frame (64 ms) and 100 the fourth (128 ms).
    # Measured: on 26 Piper questions 50 ms probed 46 pauses (20 of them inside an utterance)
    # and 100 ms 45 (19), while `parley bench turn --profile bare` went from 402 / 478 to
    # 284 / 349 ms beyond the silence.
    speculation_probe_ms: int = field(default_factory=lambda: _env_int("PARLEY_SPECULATION_PROBE_MS", 50))

    # WebRTC: no ICE servers by default (loopback / same-host); a deployment
    # across networks lists STUN/TURN URLs here, comma separated.
    ice_servers: list[str] = field(
        default_factory=lambda: [u for u in (_env("PARLEY_ICE_SERVERS", "") or "").split(",") if u]
    )

    # Debug/test aid: validate every outgoing event against openai-python's types.
    validate_events: bool = field(default_factory=lambda: _env_bool("PARLEY_VALIDATE_EVENTS", False))
