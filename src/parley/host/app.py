"""The engine's HTTP/WebSocket surface, as an ASGI app.

Routes (OpenAI-compatible):

* ``GET  /v1/realtime``                 WebSocket sessions (and ``?call_id=`` sideband)
* ``POST /v1/realtime/client_secrets``  mint ``ek_…`` secrets with a stored session config
* ``POST /v1/realtime/calls``           WebRTC SDP offer → answer (see transports/webrtc.py)
* ``POST /v1/realtime/calls/{id}/hangup`` end a WebRTC call (engine key, as for the sideband)
* ``POST /v1/chat/completions``         the engine's LLM as a text chat server (see chat.py)
* ``POST /v1/audio/transcriptions``      OpenAI-compatible STT from the local models (audio_api.py)
* ``POST /v1/audio/speech``              OpenAI-compatible TTS, streamed (audio_api.py)
* ``GET  /healthz``                     liveness and model status
* ``GET  /readyz``                      readiness and load for a load balancer (503 while
  loading or draining)

``engine_router`` is what ``parley serve`` mounts in-process; ``create_engine_app``
wraps it in an app whose lifespan loads the models.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, FastAPI, Request, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from parley import __version__
from parley.host.audio_api import audio_router
from parley.host.chat import chat_completions
from parley.host.runtime import EngineRuntime
from parley.host.transports.websocket import realtime_websocket
from parley.httpapi import bearer_token, openai_error
from parley.protocol.errors import ProtocolError
from parley.protocol.session_config import apply_update, default_session, wire_session

log = logging.getLogger(__name__)

MIN_SECRET_TTL, MAX_SECRET_TTL = 10, 7200


def error_response(
    status: int,
    message: str,
    code: str | None = None,
    param: str | None = None,
    type_: str = "invalid_request_error",
) -> JSONResponse:
    return JSONResponse(openai_error(message, type_, code, param), status_code=status)


def engine_router(runtime: EngineRuntime) -> APIRouter:
    router = APIRouter()

    @router.websocket("/v1/realtime")
    async def realtime(ws: WebSocket) -> None:
        await realtime_websocket(ws, runtime)

    @router.post("/v1/realtime/client_secrets")
    async def client_secrets(request: Request) -> JSONResponse:
        client = request.client.host if request.client else None
        auth = runtime.auth.check(bearer_token(request.headers.get("authorization")), client)
        if not auth.ok:
            return error_response(auth.status, auth.message, auth.code)
        if auth.secret is not None:
            return error_response(
                403, "An ephemeral key cannot mint other keys; use the engine key.", "forbidden"
            )
        # A secret is minted to open a session at once: refuse it now rather than at connect.
        if (refusal := runtime.refusal()) is not None:
            return refusal.response()
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return error_response(400, "The request body is not valid JSON.", "invalid_json")
        if not isinstance(body, dict):
            return error_response(400, "The request body must be a JSON object.", "invalid_json")
        expires_after = body.get("expires_after") or {}
        if not isinstance(expires_after, dict):
            return error_response(
                400, "Invalid 'expires_after': expected an object.", "invalid_value", "expires_after"
            )
        if expires_after.get("anchor", "created_at") != "created_at":
            return error_response(
                400,
                "Invalid 'expires_after.anchor': only 'created_at' is supported.",
                "invalid_value",
                "expires_after.anchor",
            )
        ttl = expires_after.get("seconds", runtime.config.client_secret_default_ttl)
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not MIN_SECRET_TTL <= ttl <= MAX_SECRET_TTL:
            return error_response(
                400,
                f"Invalid 'expires_after.seconds': expected an integer between {MIN_SECRET_TTL} and "
                f"{MAX_SECRET_TTL}.",
                "invalid_value",
                "expires_after.seconds",
            )
        config = body.get("session") or {"type": "realtime"}
        try:
            effective = apply_update(default_session(), config)
        except ProtocolError as err:
            param = f"session.{err.param.removeprefix('session.')}" if err.param else None
            return error_response(400, err.message, err.code, param)
        secret = runtime.secrets.mint(ttl, config)
        effective["expires_at"] = int(secret.expires_at)
        return JSONResponse(
            {"value": secret.value, "expires_at": int(secret.expires_at), "session": wire_session(effective)}
        )

    @router.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        return await chat_completions(request, runtime)

    @router.get("/healthz")
    async def healthz() -> dict[str, Any]:
        models = runtime.models
        return {
            "status": "ok" if models is not None else "loading",
            "version": __version__,
            "uptime_s": round(time.time() - runtime.started_at, 1),
            "sessions": len(runtime.sessions),
            "calls": len(runtime.calls),
            "models": None
            if models is None
            else {
                stage: {"backend": loaded.backend, "source": loaded.source}
                for stage, loaded in getattr(models, "stages", {}).items()
            },
        }

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        """Readiness for a load balancer's health check (HAProxy ``http-check``): 200 while this
        node takes sessions (``full`` included: it refuses them itself, quickly), 503 while it
        loads or drains. The body carries the load; the agent port (agent.py) turns it into a weight."""
        load = runtime.load()
        load["node"] = runtime.node_id
        return JSONResponse(load, status_code=503 if load["status"] in ("draining", "loading") else 200)

    router.include_router(audio_router(runtime))

    # WebRTC (aiortc, PyAV) adds /v1/realtime/calls; without those packages WebSockets still work.
    with contextlib.suppress(ModuleNotFoundError):
        from parley.host.transports.webrtc import calls_router

        router.include_router(calls_router(runtime))

    return router


CORS_HEADERS = ["Authorization", "Content-Type", "X-OpenAI-Agents-SDK", "OpenAI-Beta"]


def create_engine_app(runtime: EngineRuntime) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="Parley engine", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    # Browsers POST SDP offers cross-origin with a bearer key (no cookies), as with
    # OpenAI's own endpoint; the Location header carries the call id.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=CORS_HEADERS,
        expose_headers=["Location", "Retry-After"],
    )
    app.include_router(engine_router(runtime))
    return app
