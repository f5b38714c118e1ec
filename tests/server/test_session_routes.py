"""``/api/config``, ``/api/session`` and the page: minting, limits, access control, headers (fake models)."""

from __future__ import annotations

import json
import logging
import time

import httpx
import pytest
import websockets

from tests.support.serve import UPSTREAM_KEY, dead_upstream_url, serve_local, serve_remote


async def test_config_describes_upstream_tools_and_defaults() -> None:
    async with serve_local() as srv, httpx.AsyncClient(base_url=srv.http) as http:
        r = await http.get("/api/config")
        assert r.status_code == 200
        cfg = r.json()
        assert cfg["upstream"]["kind"] == "local" and cfg["upstream"]["label"]
        assert cfg["model"] == "gpt-realtime"
        assert "marin" in cfg["voices"]
        assert set(cfg["defaults"]) == {"voice", "speed", "transcription"}
        names = {t["name"] for t in cfg["tools"]}
        assert {"get_current_time", "calculate", "add_note", "list_notes"} <= names
        assert cfg["access_token_required"] is False
        assert cfg["features"] == {"stage_metrics": True}


async def test_page_and_security_headers() -> None:
    async with serve_local() as srv, httpx.AsyncClient(base_url=srv.http) as http:
        r = await http.get("/")
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        csp = r.headers["content-security-policy"]
        assert "media-src 'self' blob:" in csp and "connect-src 'self'" in csp
        assert f"ws://127.0.0.1:{srv.server.port}" in csp
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-content-type-options"] == "nosniff"


async def test_mint_returns_short_lived_secret_with_server_tools() -> None:
    async with serve_local() as srv, httpx.AsyncClient(base_url=srv.http) as http:
        page_tool = {
            "type": "function",
            "name": "show_color",
            "description": "Show a color",
            "parameters": {"type": "object", "properties": {"hex": {"type": "string"}}},
        }
        r = await http.post(
            "/api/session",
            json={
                "session": {
                    "instructions": "Be brief.",
                    "audio": {
                        "output": {"voice": "cedar", "speed": 1.2},
                        "input": {
                            "turn_detection": {"type": "server_vad", "silence_duration_ms": 400},
                            "transcription": {"model": "whisper-1"},
                        },
                    },
                    "tools": [page_tool],
                }
            },
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"value", "expires_at", "session"}
        assert body["value"].startswith("ek_")
        assert time.time() < body["expires_at"] <= time.time() + srv.config.secret_ttl + 2
        session = body["session"]
        assert session["instructions"] == "Be brief."
        assert session["audio"]["output"]["voice"] == "cedar"
        assert session["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 400
        names = [t["name"] for t in session["tools"]]
        assert names[0] == "show_color" and "get_current_time" in names and "add_note" in names
        assert r.headers["cache-control"] == "no-store"
        # The secret works on the engine, with that session.
        assert srv.runtime is not None and srv.runtime.secrets.get(body["value"]) is not None
        # An empty body mints the defaults.
        r2 = await http.post("/api/session")
        assert r2.status_code == 200 and r2.json()["value"].startswith("ek_")


BIG = "x" * 9000
SESSION_BAD_INPUT = [
    # (name, raw body, status, code, param)
    ("invalid json", b"{nope", 400, "invalid_json", None),
    ("not an object", b"[1,2]", 400, "invalid_json", None),
    (
        "unknown top-level field",
        json.dumps({"session": {}, "key": 1}).encode(),
        400,
        "unknown_parameter",
        "key",
    ),
    (
        "server-only field: model",
        json.dumps({"session": {"model": "gpt-4o"}}).encode(),
        400,
        "unknown_parameter",
        "session.model",
    ),
    (
        "server-only field: tracing",
        json.dumps({"session": {"tracing": "auto"}}).encode(),
        400,
        "unknown_parameter",
        "session.tracing",
    ),
    (
        "nested unknown field",
        json.dumps({"session": {"audio": {"output": {"bitrate": 9}}}}).encode(),
        400,
        "unknown_parameter",
        "session.audio.output.bitrate",
    ),
    (
        "transcription session",
        json.dumps({"session": {"type": "transcription"}}).encode(),
        400,
        "invalid_value",
        "session.type",
    ),
    (
        "instructions too long",
        json.dumps({"session": {"instructions": BIG}}).encode(),
        400,
        "instructions_too_long",
        "session.instructions",
    ),
    (
        "too many tools",
        json.dumps(
            {"session": {"tools": [{"type": "function", "name": f"t{i}"} for i in range(17)]}}
        ).encode(),
        400,
        "too_many_tools",
        "session.tools",
    ),
    (
        "speed out of range",
        json.dumps({"session": {"audio": {"output": {"speed": 4}}}}).encode(),
        400,
        "invalid_value",
        "session.audio.output.speed",
    ),
    (
        "bad turn detection",
        json.dumps({"session": {"audio": {"input": {"turn_detection": {"type": "psychic"}}}}}).encode(),
        400,
        "invalid_value",
        "session.audio.input.turn_detection.type",
    ),
    (
        "both modalities",
        json.dumps({"session": {"output_modalities": ["audio", "text"]}}).encode(),
        400,
        "invalid_value",
        "session.output_modalities",
    ),
    (
        "oversized body",
        json.dumps({"session": {"instructions": "y" * 70000}}).encode(),
        413,
        "request_too_large",
        None,
    ),
]


async def test_session_bad_input_table() -> None:
    async with serve_local(mint_burst=100) as srv, httpx.AsyncClient(base_url=srv.http) as http:
        for name, raw, status, code, param in SESSION_BAD_INPUT:
            r = await http.post("/api/session", content=raw, headers={"Content-Type": "application/json"})
            assert r.status_code == status, (name, r.text)
            error = r.json()["error"]
            assert error["code"] == code, (name, error)
            assert error["param"] == param, (name, error)
            assert error["message"] and error["type"], name
        assert srv.runtime is not None and srv.runtime.secrets.minted == 0  # nothing was minted


async def test_mint_rate_limit() -> None:
    async with (
        serve_local(mint_burst=3, mint_rate_per_minute=1) as srv,
        httpx.AsyncClient(base_url=srv.http) as http,
    ):
        statuses = [(await http.post("/api/session")).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        r = await http.post("/api/session")
        assert r.json()["error"]["type"] == "rate_limit_error" and int(r.headers["retry-after"]) >= 1


async def test_origin_check_on_api_routes() -> None:
    async with (
        serve_local(allow_origins=["https://friend.example"]) as srv,
        httpx.AsyncClient(base_url=srv.http) as http,
    ):
        same = await http.post("/api/session", headers={"Origin": srv.http})
        assert same.status_code == 200
        friend = await http.post("/api/session", headers={"Origin": "https://friend.example"})
        assert friend.status_code == 200
        for path in ("/api/session", "/api/realtime/calls", "/v1/realtime/client_secrets"):
            evil = await http.post(path, headers={"Origin": "https://evil.example"})
            assert evil.status_code == 403, path
            assert evil.json()["error"]["code"] == "origin_not_allowed"
        preflight = await http.options(
            "/api/session",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 403
        friendly = await http.options(
            "/api/realtime/calls",
            headers={
                "Origin": "https://friend.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert friendly.status_code == 200
        assert friendly.headers["access-control-allow-origin"] == "https://friend.example"
        with pytest.raises(websockets.InvalidStatus) as info:
            async with websockets.connect(f"{srv.ws}/api/realtime/ws", origin="https://evil.example"):
                pass
        assert info.value.response.status_code == 403
        # The engine's own routes are guarded too (a key-less loopback engine trusts any local page).
        with pytest.raises(websockets.InvalidStatus):
            async with websockets.connect(f"{srv.ws}/v1/realtime", origin="https://evil.example"):
                pass


async def test_access_token_enforced_on_every_route() -> None:
    token = "tok-123456"
    async with serve_local(access_token=token) as srv, httpx.AsyncClient(base_url=srv.http) as http:
        assert (await http.get("/api/config")).json()["access_token_required"] is True
        missing = await http.post("/api/session")
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "access_token_required"
        wrong = await http.post("/api/session", headers={"X-Parley-Access-Token": "nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_access_token"
        ok = await http.post("/api/session", headers={"X-Parley-Access-Token": token})
        assert ok.status_code == 200
        calls = await http.post(
            "/api/realtime/calls",
            content=b"v=0",
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {ok.json()['value']}"},
        )
        assert calls.status_code == 401 and calls.json()["error"]["code"] == "access_token_required"
        for protocols in (["realtime"], ["realtime", "parley-access-token.nope"]):
            with pytest.raises(websockets.InvalidStatus) as info:
                async with websockets.connect(f"{srv.ws}/api/realtime/ws", subprotocols=protocols):
                    pass
            assert info.value.response.status_code == 401
        async with websockets.connect(
            f"{srv.ws}/api/realtime/ws", subprotocols=["realtime", f"parley-access-token.{token}"]
        ) as ws:
            assert ws.subprotocol == "realtime"
            assert json.loads(await ws.recv())["type"] == "session.created"


async def test_remote_upstream_mint_and_key_never_leaks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with serve_remote() as srv, httpx.AsyncClient(base_url=srv.http) as http:
        cfg = (await http.get("/api/config")).json()
        assert cfg["upstream"]["kind"] == "custom" and cfg["features"]["stage_metrics"] is False
        r = await http.post("/api/session", json={"session": {"instructions": "Hi there."}})
        assert r.status_code == 200, r.text
        assert r.json()["session"]["instructions"] == "Hi there."
        bodies = [r.text, (await http.get("/")).text, json.dumps(cfg), str(r.headers)]
    # The upstream refuses a wrong server key: the page learns it is a server problem, not the key.
    async with (
        serve_remote(key="wrong-key-abcdef", engine_key=UPSTREAM_KEY) as srv,
        httpx.AsyncClient(base_url=srv.http) as http,
    ):
        r = await http.post("/api/session")
        assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_auth_failed"
        bodies.append(r.text)
        with pytest.raises(websockets.InvalidStatus) as info:
            async with websockets.connect(f"{srv.ws}/api/realtime/ws"):
                pass
        assert info.value.response.status_code == 502
        bodies.append(info.value.response.body.decode())
    for text in bodies:
        assert UPSTREAM_KEY not in text and "wrong-key-abcdef" not in text
    assert UPSTREAM_KEY not in caplog.text and "wrong-key-abcdef" not in caplog.text


async def test_unreachable_upstream_is_502_everywhere() -> None:
    async with (
        serve_remote(upstream_url=dead_upstream_url()) as srv,
        httpx.AsyncClient(base_url=srv.http) as http,
    ):
        r = await http.post("/api/session")
        assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_unreachable"
        assert "Could not reach" in r.json()["error"]["message"]
        calls = await http.post(
            "/api/realtime/calls",
            content=b"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=audio 9 x\r\n",
            headers={"Content-Type": "application/sdp", "Authorization": "Bearer ek_x"},
        )
        assert calls.status_code == 502 and calls.json()["error"]["code"] == "upstream_unreachable"
        with pytest.raises(websockets.InvalidStatus) as info:
            async with websockets.connect(f"{srv.ws}/api/realtime/ws"):
                pass
        assert info.value.response.status_code == 502
        assert json.loads(info.value.response.body)["error"]["code"] == "upstream_unreachable"
