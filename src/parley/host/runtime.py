"""The engine's process-wide state: config, loaded models, secrets, live sessions and calls.

One runtime serves any number of sessions; ``parley engine`` owns one and
``parley serve`` embeds one in-process. Models load once, in :meth:`start`.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from parley.engine.config import EngineConfig
from parley.host import admission
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
    # Set on SIGTERM (see drain.py): new sessions are refused, running ones go on.
    draining: bool = False
    prepared: int = 0  # prompts evaluated ahead by prepare() (tests wait for it)

    def __post_init__(self) -> None:
        if self.config.node_key and self.secrets.node_key is None:
            # Nodes sharing the key accept each other's ek_ secrets (see auth.py).
            self.secrets = SecretStore(self.config.node_key)
        self.auth = Authenticator(self.config.api_key, self.secrets)
        self.node_id = self.config.node_id or socket.gethostname()

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

    def refusal(self) -> admission.Refusal | None:
        """Why a new session would be refused now, or None: O(1), before any work for it."""
        if self.draining:
            return admission.draining()
        if self.models is None:
            return admission.loading()
        if self.at_capacity():
            return admission.busy(
                len(self.sessions), self.config.max_sessions, self.config.retry_after_seconds
            )
        return None

    def load(self) -> dict[str, Any]:
        """What /readyz and the load balancer's agent see."""
        capacity = self.config.max_sessions
        sessions = len(self.sessions)
        if self.draining:
            status = "draining"
        elif self.models is None:
            status = "loading"
        elif sessions >= capacity:
            status = "full"
        else:
            status = "ready"
        return {
            "status": status,
            "sessions": sessions,
            "calls": len(self.calls),
            "capacity": capacity,
            "free": max(0, capacity - sessions),
        }

    async def prepare(self, session: dict[str, Any]) -> None:
        """Evaluate the prompt of a session clients are known to open, before the first one does.

        ``parley serve`` calls this with the web page's session: the model's saved state of it
        then starts every page's session (see llama_prompt_cache), so even the first user
        after start-up does not wait for the instructions and tool schemas to be evaluated.
        Best effort: a failure is logged and the first session evaluates its own prompt.
        """
        from parley.engine.session import RealtimeSession

        assert self.models is not None, "EngineRuntime.start() has not run"
        preset = RealtimeSession(self.models, self.config, initial=session)
        ready = False
        try:
            preset.open()
            await preset.prompt_ready()
            ready = True
            self.prepared += 1
        except Exception:
            log.exception("preparing a session's prompt failed")
        finally:
            # Kept for good, not as one of the few recent donors: later sessions keep coming.
            await preset.close(keep_prompt=ready)

    def new_session(self, **kwargs: Any) -> RealtimeSession:
        from parley.engine.session import RealtimeSession

        assert self.models is not None, "EngineRuntime.start() has not run"
        session = RealtimeSession(self.models, self.config, **kwargs)
        self.sessions[session.id] = session
        return session

    async def end_session(self, session: RealtimeSession) -> None:
        self.sessions.pop(session.id, None)
        await session.close()
