"""The ``parley serve`` ASGI app: the page, its API, and the relays.

Routes:

* ``GET  /``, ``/static/…``       the browser UI (``parley/web/static``)
* ``GET  /api/config``             what the page needs to draw itself
* ``POST /api/session``            mint an ``ek_`` secret upstream (see mint.py)
* ``POST /api/realtime/calls``     relay a WebRTC offer upstream (see sdp_relay.py)
* ``WS   /api/realtime/ws``        relay a WebSocket session upstream (see ws_relay.py); alias
  ``/api/v1/realtime`` for SDKs that append ``/realtime`` to a base URL
* ``GET  /api/health``             liveness, upstream, live relays and calls
* ``GET  /api/scenarios``          the scenarios a session may choose; ``POST`` registers a client's own
* ``GET  /api/realtime/calls/{id}/events``  a WebRTC call's ``parley.*`` events, as JSON lines
* ``GET  /readyz``                 readiness and load for a load balancer (the embedded engine's,
  or the relays' with a remote upstream); 503 while draining
* with the embedded engine, its own ``/v1/realtime…`` routes too (``ek_`` secrets or the engine key only)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import time
from collections import Counter
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from parley import __version__
from parley.host import admission
from parley.host.app import engine_router
from parley.host.drain import Drain, close_sessions
from parley.host.runtime import EngineRuntime
from parley.httpapi import bearer_token, deny, openai_error
from parley.protocol.session_config import VOICES, default_session
from parley.scenarios import schema as scenario_schema
from parley.scenarios.schema import ScenarioError
from parley.server.config import ServerConfig
from parley.server.mint import MintError, build_session, mint_secret, parse_json
from parley.server.page_defaults import page_session
from parley.server.scenario import ScenarioCatalog, ScenarioFactory, agent_sessions, start_scenario
from parley.server.sdp_relay import CallError, SidebandTools, check_offer, relay_offer
from parley.server.security import (
    ACCESS_TOKEN_HEADER,
    OriginGuard,
    RateLimiter,
    SecurityHeaders,
    subprotocol_access_token,
    token_matches,
)
from parley.server.supervisor import DEFAULT_OPENAI_MODEL, ChatEndpoint
from parley.server.tools import ToolRegistry, default_registry
from parley.server.upstream import LocalUpstream, Upstream
from parley.server.ws_relay import RelayStats, relay_websocket

log = logging.getLogger(__name__)
# Module scripts need a JavaScript MIME type; Python's table does not know .mjs.
mimetypes.add_type("text/javascript", ".mjs")

PLACEHOLDER_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Parley</title></head>
<body><h1>Parley</h1><p>The server is running, but the browser UI is not installed
(<code>parley/web/static/index.html</code> is missing). The API is at <code>/api/config</code>.</p></body></html>
"""


def static_dir() -> Path:
    return Path(str(resources.files("parley") / "web" / "static"))


def error(
    status: int,
    message: str,
    code: str,
    param: str | None = None,
    type_: str = "invalid_request_error",
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(openai_error(message, type_, code, param), status_code=status, headers=headers)


def build_catalog(config: ServerConfig, registry: ToolRegistry) -> ScenarioCatalog:
    """The shipped scenarios plus ``config.scenario_files`` (a file's scenario wins over a shipped
    one of the same name); raises :class:`ScenarioError` naming the file at fault."""
    tools = set(registry.tools)
    scenarios: dict[str, Any] = {}
    for name, shipped in scenario_schema.builtin().items():
        try:
            shipped.check_tools(tools)
        except ScenarioError:
            continue  # a server without the tools it names (a custom registry) does not offer it
        scenarios[name] = shipped
    for spec in config.scenario_files:
        scenario = scenario_schema.resolve(spec)
        scenarios[scenario.name] = scenario
    return ScenarioCatalog(scenarios, tools, config.default_scenario)


def chat_endpoint(upstream: Upstream) -> ChatEndpoint:
    """The upstream's own chat-completions server: the supervisor's default."""
    model = {"local": "local", "openai": DEFAULT_OPENAI_MODEL}.get(upstream.kind, "default")
    return ChatEndpoint(upstream.http, upstream.auth_headers(), model)


def _query(request: Request | WebSocket, upstream: Upstream) -> dict[str, str]:
    """What the page may pass on to the upstream's query string."""
    q: dict[str, str] = {}
    # parley.metrics is the local engine's opt-in extension; OpenAI would not know it.
    if upstream.kind != "openai" and request.query_params.get("parley_metrics", "").lower() in ("1", "true"):
        q["parley_metrics"] = "1"
    return q


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None once it exceeds ``limit`` (checked while reading, not after)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return body


def create_app(
    config: ServerConfig,
    upstream: Upstream,
    registry: ToolRegistry | None = None,
    catalog: ScenarioCatalog | None = None,
) -> FastAPI:
    registry = default_registry() if registry is None else registry
    catalog = build_catalog(config, registry) if catalog is None else catalog
    chat = chat_endpoint(upstream)
    minted_scenarios: dict[str, tuple[float, ScenarioFactory]] = {}  # ek_ secret → its call's scenario

    def factory(scenario: Any) -> ScenarioFactory | None:
        return ScenarioFactory(scenario, registry, chat) if scenario is not None else None

    limiter = RateLimiter(config.mint_rate_per_minute, config.mint_burst)
    per_client: Counter[str] = Counter()  # open relayed sessions by client address
    sideband = SidebandTools(upstream, registry, config.sideband_max_seconds)
    relays = RelayStats()
    started = time.time()
    local = upstream.runtime if isinstance(upstream, LocalUpstream) else None
    state = {"draining": False, "prompts_ready": local is None}

    def refusal() -> admission.Refusal | None:
        """A new session is refused at once while draining, or when the embedded engine is full."""
        if state["draining"]:
            return admission.draining()
        return local.refusal() if local is not None else None

    async def prepare_prompts(engine: EngineRuntime, page: dict[str, Any]) -> None:
        """The page's prompt first (most sessions start from it), then every scenario agent's."""
        await engine.prepare(page)
        for scenario in catalog.scenarios.values():
            # As minted for a scenario: the page's session without serve's tools, then the agent's.
            for session in agent_sessions(page_session(None), scenario, registry):
                await engine.prepare(session)
        state["prompts_ready"] = True

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await upstream.start()
        preparing = None
        if local is not None:
            # The page's prompt (its instructions and our tools) is evaluated while nobody is
            # talking yet; a session that arrives meanwhile takes the model over at once.
            page = page_session(registry.merge([]) if registry else None)
            preparing = asyncio.create_task(prepare_prompts(local, page), name="prepare-prompts")
        try:
            yield
        finally:
            if preparing is not None:
                preparing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await preparing
            await sideband.stop()
            await upstream.stop()

    app = FastAPI(
        title="Parley",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.sideband = sideband
    app.state.scenarios = catalog
    app.state.registry = registry
    app.state.relays = relays
    app.state.upstream = upstream
    app.state.drain = _drain(config, state, relays, sideband, local)

    def check_token(request: Request) -> JSONResponse | None:
        given = request.headers.get(ACCESS_TOKEN_HEADER)
        if token_matches(given, config.access_token):
            return None
        if not given:
            return error(
                401,
                "This server requires an access token: open the page with ?token=… "
                f"(sent as the {ACCESS_TOKEN_HEADER} header).",
                "access_token_required",
            )
        return error(401, "The access token is not valid.", "invalid_access_token")

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        page = static_dir() / "index.html"
        if page.is_file():
            return FileResponse(page, headers={"Cache-Control": "no-cache"})
        return HTMLResponse(PLACEHOLDER_PAGE)

    @app.get("/api/config")
    async def api_config() -> dict[str, Any]:
        defaults = default_session(config.model)
        transcription_model = "whisper-1" if upstream.kind == "local" else "gpt-4o-mini-transcribe"
        return {
            "upstream": {"kind": upstream.kind, "label": upstream.label},
            "model": config.model,
            "voices": list(VOICES),
            # The page keeps its own instructions and turn detection (defaults.js: written for a
            # spoken conversation, and the setting `parley bench turn-taking` chose); these are
            # what depends on the upstream.
            "defaults": {
                "voice": defaults["audio"]["output"]["voice"],
                "speed": defaults["audio"]["output"]["speed"],
                "transcription": {"model": transcription_model},
            },
            "tools": registry.describe(),
            "scenarios": catalog.summaries(),
            "default_scenario": catalog.default,
            "access_token_required": config.access_token_required,
            "features": {"stage_metrics": upstream.kind == "local"},
        }

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "uptime_s": round(time.time() - started, 1),
            "upstream": {"kind": upstream.kind, "label": upstream.label},
            "relays": {"active": relays.active, "total": relays.total},
            "sideband_calls": len(sideband.tasks),
            "draining": state["draining"],
            # The page's prompt evaluated ahead (embedded engine): until then a first session pays for it.
            "page_prompt_ready": local is not None and local.prepared > 0,
            "prepared_prompts": local.prepared if local is not None else 0,
            # every prompt serve prepares at start-up is evaluated: no background work left
            "prompts_ready": state["prompts_ready"],
        }

    def load() -> dict[str, Any]:
        """What /readyz and HAProxy's agent see: the embedded engine's sessions, or the relays'."""
        if local is not None:
            return local.load()
        free = max(0, config.max_relay_sessions - relays.active)
        return {
            "status": "draining" if state["draining"] else "full" if not free else "ready",
            "sessions": relays.active,
            "calls": len(sideband.tasks),
            "capacity": config.max_relay_sessions,
            "free": free,
        }

    app.state.load = load
    if local is None:  # (the embedded engine's router brings its own /readyz)

        @app.get("/readyz")
        async def readyz() -> JSONResponse:
            body = load()
            return JSONResponse(body, status_code=503 if body["status"] == "draining" else 200)

    @app.post("/api/session")
    async def api_session(request: Request) -> JSONResponse:
        if (refused := check_token(request)) is not None:
            return refused
        if (busy := refusal()) is not None:
            log.warning("refused a session: %s", busy.close_reason)
            return busy.response()
        client = request.client.host if request.client else "?"
        allowed, retry_after = limiter.allow(client)
        if not allowed:
            return error(
                429,
                f"Too many sessions requested; try again in {retry_after:.0f} s.",
                "rate_limit_exceeded",
                type_="rate_limit_error",
                headers={"Retry-After": str(max(1, round(retry_after)))},
            )
        raw = await _read_body(request, config.max_request_bytes)
        if raw is None:
            return error(
                413, f"The request body is larger than {config.max_request_bytes} bytes.", "request_too_large"
            )
        try:
            body = parse_json(raw)
            scenario = None
            if isinstance(body, dict) and "scenario" in body:
                body = dict(body)
                wanted = body.pop("scenario")
                if wanted is not None and not isinstance(wanted, str):
                    raise MintError(400, "'scenario' must be a scenario name.", "invalid_value", "scenario")
                try:
                    scenario = catalog.choose(wanted)
                except ScenarioError as exc:
                    raise MintError(400, str(exc), "unknown_scenario", "scenario") from None
            elif catalog.default:
                scenario = catalog.choose(None)
            session = build_session(body, config, registry if scenario is None else ToolRegistry())
            if scenario is not None:
                start_scenario(session, scenario, registry)
            minted = await mint_secret(upstream, session, config.secret_ttl)
        except MintError as err:
            return error(err.status, err.message, err.code, err.param, err.type, err.headers)
        if scenario is not None:
            now = time.monotonic()
            for key in [k for k, (t, _) in minted_scenarios.items() if t <= now]:
                del minted_scenarios[key]
            made = factory(scenario)
            assert made is not None
            minted_scenarios[minted["value"]] = (now + config.secret_ttl + 5, made)
            minted["scenario"] = scenario.summary()
        return JSONResponse(minted, headers={"Cache-Control": "no-store"})

    @app.get("/api/scenarios")
    async def list_scenarios() -> dict[str, Any]:
        return {"scenarios": catalog.summaries(), "default": catalog.default}

    @app.post("/api/scenarios")
    async def register_scenario(request: Request) -> JSONResponse:
        """A client's own scenario (YAML or JSON body): an id to pass as ``scenario``."""
        if (refused := check_token(request)) is not None:
            return refused
        client = request.client.host if request.client else "?"
        allowed, retry_after = limiter.allow(client)
        if not allowed:
            return error(429, f"Too many requests; try again in {retry_after:.0f} s.", "rate_limit_exceeded")
        raw = await _read_body(request, config.max_request_bytes)
        if raw is None:
            return error(413, "The scenario is too large.", "request_too_large")
        try:
            scenario = scenario_schema.parse_text(raw.decode("utf-8", "replace"), "the scenario sent")
            if any(len(a.instructions) > config.max_instructions_chars for a in scenario.agents):
                raise ScenarioError(
                    f"the scenario sent: instructions are limited to {config.max_instructions_chars} characters"
                )
            ident = catalog.register(scenario)
        except ScenarioError as exc:
            return error(400, str(exc), "invalid_scenario")
        return JSONResponse(
            {"id": ident, "scenario": scenario.summary()}, headers={"Cache-Control": "no-store"}
        )

    @app.get("/api/realtime/calls/{call_id}/events")
    async def call_events(call_id: str, request: Request) -> Response:
        if (refused := check_token(request)) is not None:
            return refused
        if not sideband.events.known(call_id):
            return error(404, f"No call {call_id!r} with server events here.", "call_not_found")
        return StreamingResponse(
            sideband.events.stream(call_id),
            media_type="application/x-ndjson",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.post("/api/realtime/calls")
    async def api_calls(request: Request) -> Response:
        if (refused := check_token(request)) is not None:
            return refused
        if (busy := refusal()) is not None:
            log.warning("refused a call: %s", busy.close_reason)
            return busy.response()
        secret = bearer_token(request.headers.get("authorization"))
        if not secret:
            return error(
                401,
                "Missing bearer authentication: send the ek_… secret from /api/session as "
                "'Authorization: Bearer ek_…'.",
                "missing_api_key",
            )
        if not secret.startswith("ek_"):
            return error(
                401, "Only ephemeral ek_… secrets from /api/session are accepted here.", "invalid_api_key"
            )
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/sdp":
            return error(
                415,
                f"Send the SDP offer as 'Content-Type: application/sdp' (got {content_type or 'none'!r}).",
                "unsupported_media_type",
            )
        raw = await _read_body(request, config.max_sdp_bytes)
        try:
            if raw is None:
                raise CallError(
                    413, f"The SDP offer is larger than {config.max_sdp_bytes} bytes.", "sdp_too_large"
                )
            sdp = check_offer(raw, config.max_sdp_bytes)
            answer = await relay_offer(upstream, sdp, secret, _query(request, upstream))
        except CallError as err:
            return error(err.status, err.message, err.code, type_=err.type, headers=err.headers)
        chosen = minted_scenarios.pop(secret, None)
        sideband.start(answer.call_id, _query(request, upstream), chosen[1] if chosen else None)
        headers = {"Cache-Control": "no-store"}
        if answer.call_id:
            headers["Location"] = f"/api/realtime/calls/{answer.call_id}"
        return Response(answer.sdp, status_code=201, media_type="application/sdp", headers=headers)

    # /api/v1/realtime: the same relay for SDKs that build "<base>/realtime" themselves
    # (openai-python: websocket_base_url="ws://host:8000/api/v1").
    @app.websocket("/api/realtime/ws")
    @app.websocket("/api/v1/realtime")
    async def api_ws(ws: WebSocket) -> None:
        offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        given = subprotocol_access_token(offered) or ws.headers.get(ACCESS_TOKEN_HEADER)
        if not token_matches(given, config.access_token):
            await deny(
                ws,
                401,
                "This server requires an access token (subprotocol parley-access-token.<token>)."
                if not given
                else "The access token is not valid.",
                "access_token_required" if not given else "invalid_access_token",
            )
            return
        busy = refusal()
        if busy is None and relays.active >= config.max_relay_sessions:
            busy = admission.busy(relays.active, config.max_relay_sessions, config.engine.retry_after_seconds)
        if busy is not None:
            log.warning("refused a WebSocket session: %s", busy.close_reason)
            await admission.refuse_websocket(ws, busy, "realtime" if "realtime" in offered else None)
            return
        client = ws.client.host if ws.client else "?"
        if per_client[client] >= config.max_sessions_per_client:
            await deny(
                ws,
                429,
                f"This client already has {per_client[client]} relayed sessions open"
                f" (the limit per client is {config.max_sessions_per_client}).",
                "session_limit_reached",
            )
            return
        try:
            scenario = catalog.choose(ws.query_params.get("scenario"))
        except ScenarioError as exc:
            await deny(ws, 400, str(exc), "unknown_scenario")
            return
        extensions = ws.query_params.get("parley_events", "").lower() in ("1", "true")
        # The server picks the model: a page must not switch the server's account to another one.
        query = {"model": config.model, **_query(ws, upstream)}
        per_client[client] += 1
        try:
            await relay_websocket(ws, upstream, registry, query, relays, factory(scenario), extensions)
        finally:
            per_client[client] -= 1
            if not per_client[client]:
                del per_client[client]

    if isinstance(upstream, LocalUpstream):
        # The embedded engine's own surface, for SDKs pointed straight at it with an ek_ secret.
        app.include_router(engine_router(upstream.runtime))

    static = static_dir()
    if static.is_dir():
        app.mount("/static", StaticFiles(directory=static), name="static")

    extra_connect = [] if isinstance(upstream, LocalUpstream) else [getattr(upstream, "base_url", "")]
    if config.allow_origins:
        # Pages on the allow-listed origins call us cross-origin: answer their preflights
        # and let them read the call's Location.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.allow_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Parley-Access-Token", "X-OpenAI-Agents-SDK"],
            expose_headers=["Location", "Retry-After"],
        )
    app.add_middleware(OriginGuard, allowed=config.allow_origins)
    app.add_middleware(SecurityHeaders, extra_connect=[u for u in extra_connect if u])
    return app


def _drain(
    config: ServerConfig,
    state: dict[str, bool],
    relays: RelayStats,
    sideband: SidebandTools,
    local: Any,
) -> Drain:
    """What SIGTERM does to ``parley serve`` (see host/drain.py): stop admitting, wait for the
    relayed sessions (and the embedded engine's calls) to end, then close what is left."""

    def begin() -> None:
        state["draining"] = True
        if local is not None:
            local.draining = True

    def active() -> int:
        return relays.active + (len(local.sessions) if local is not None else len(sideband.tasks))

    async def close_all() -> None:
        if local is not None:
            await close_sessions(local, "server shutting down")
        # Relays to a remote upstream end when uvicorn shuts down (1012, which clients retry).

    return Drain(begin, active, close_all, config.engine.drain_seconds)
