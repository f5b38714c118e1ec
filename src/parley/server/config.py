"""Settings of ``parley serve``: where the realtime upstream is, and the limits the server enforces.

Every limit has a safe default; the CLI and the environment override them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from parley.engine.config import EngineConfig

UpstreamKind = Literal["local", "openai", "custom"]
OPENAI_BASE_URL = "https://api.openai.com/v1"


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def normalize_base_url(url: str) -> str:
    """``http://host:port`` → ``http://host:port/v1``; a URL with a path is used as given."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"upstream URL must be http(s)://host[:port][/path], got {url!r}")
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path or '/v1'}"


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    # Upstream: None → the embedded local engine.
    upstream_url: str | None = None
    upstream_key: str | None = None
    model: str = "gpt-realtime"
    engine: EngineConfig = field(default_factory=EngineConfig)

    # Access control
    access_token: str | None = field(default_factory=lambda: _env("PARLEY_ACCESS_TOKEN"))
    allow_origins: list[str] = field(default_factory=list)
    mint_rate_per_minute: int = 20
    mint_burst: int = 10

    # Limits on what a page may ask for
    secret_ttl: int = 60  # seconds; a secret only has to outlive the connection set-up
    max_instructions_chars: int = 8000
    max_tools: int = 16
    max_request_bytes: int = 64 * 1024
    max_sdp_bytes: int = 32 * 1024
    max_message_bytes: int = 16 * 1024 * 1024
    max_relay_sessions: int = 200
    max_sessions_per_client: int = 32
    upstream_timeout: float = 15.0
    # How long a sideband tool runner may outlive silence from its call (a backstop; calls end it).
    sideband_max_seconds: int = 3600

    # Scenarios: files loaded besides the shipped ones, and the one sessions get unless they choose.
    scenario_files: list[str] = field(default_factory=list)
    default_scenario: str | None = None  # a name (shipped or from scenario_files)

    @property
    def upstream_kind(self) -> UpstreamKind:
        if self.upstream_url is None:
            return "local"
        return "openai" if urlsplit(self.upstream_url).hostname == "api.openai.com" else "custom"

    @property
    def access_token_required(self) -> bool:
        return self.access_token is not None


def resolve_upstream(
    upstream: str | None, upstream_key: str | None, force_local: bool
) -> tuple[str | None, str | None]:
    """(base URL or None for local, key): explicit flags win, then OPENAI_API_KEY, then the local engine."""
    if force_local:
        return None, None
    if upstream:
        return normalize_base_url(upstream), upstream_key or _env("PARLEY_UPSTREAM_KEY")
    if key := (upstream_key or _env("OPENAI_API_KEY")):
        return OPENAI_BASE_URL, key
    return None, None
