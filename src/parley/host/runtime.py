"""The engine's process-wide state: config, loaded models, secrets, live sessions and calls.

One runtime serves any number of sessions; ``parley engine`` owns one and
``parley serve`` embeds one in-process. Models load once, in :meth:`start`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from parley.engine.config import EngineConfig
from parley.host.auth import Authenticator, SecretStore

if TYPE_CHECKING:
    from parley.engine.models.registry import ModelSet
    from parley.engine.session import RealtimeSession

log = logging.getLogger(__name__)


@dataclass
class EngineRuntime:
    config: EngineConfig
    models: ModelSet | None = None
    secrets: SecretStore = field(default_factory=SecretStore)
    sessions: dict[str, RealtimeSession] = field(default_factory=dict)
    # WebRTC calls by ``rtc_…`` id (for sideband WebSockets); values are transport objects.
    calls: dict[str, Any] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self.auth = Authenticator(self.config.api_key, self.secrets)

    async def start(self, progress: Callable[[str, str], None] | None = None) -> None:
        if self.models is None:
            from parley.engine.models.registry import load_models

            t0 = time.perf_counter()
            self.models = await load_models(self.config.models, progress)
            log.info("models loaded in %.1f s", time.perf_counter() - t0)

    async def stop(self) -> None:
        for session in list(self.sessions.values()):
            await session.close()
        self.sessions.clear()
        for call in list(self.calls.values()):
            close = getattr(call, "close", None)
            if close is not None:
                await close()
        self.calls.clear()

    def at_capacity(self) -> bool:
        return len(self.sessions) >= self.config.max_sessions

    def new_session(self, **kwargs: Any) -> RealtimeSession:
        from parley.engine.session import RealtimeSession

        assert self.models is not None, "EngineRuntime.start() has not run"
        session = RealtimeSession(self.models, self.config, **kwargs)
        self.sessions[session.id] = session
        return session

    async def end_session(self, session: RealtimeSession) -> None:
        self.sessions.pop(session.id, None)
        await session.close()
