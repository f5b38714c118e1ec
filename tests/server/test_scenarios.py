"""Scenarios without real models: the file schema and its errors, the catalogue, the built-in
guardrail checks (the moderation call against a fake HTTP server on loopback), the engine's
chat endpoint, and the orchestration through ``parley serve``'s relay on fake models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from openai import AsyncOpenAI

from parley.protocol.client_events import parse_client_event
from parley.scenarios import ScenarioError, builtin, load_file, parse_text
from parley.scenarios.schema import Moderation
from parley.server.guardrails import ModerationCheck, WordList
from parley.server.scenario import ScenarioCatalog
from parley.server.tools import default_registry
from tests.server.test_serve_models import Conn
from tests.support.serve import serve_local
from tests.support.servers import serve_app

DESK = """
name: desk
agents:
  - name: greeter
    instructions: Greet and transfer.
    handoffs:
      - agent: billing
        description: invoices and payments
  - name: billing
    instructions: You are billing.
    voice: cedar
    tools: [calculate]
"""


def test_shipped_scenarios_load_and_name_their_server_tools() -> None:
    shipped = builtin()
    assert {"assistant", "customer_service", "chat_supervisor"} <= set(shipped)
    ScenarioCatalog(shipped, set(default_registry().tools))  # every named server tool exists
    desk = shipped["customer_service"]
    assert desk.first.name == "greeter"
    assert [h.agent for h in desk.first.handoffs] == ["billing", "tech_support"]
    assert shipped["chat_supervisor"].first.supervisor


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            DESK.replace("agent: billing", "agent: biling"),
            "agents[0].handoffs[0].agent: unknown agent 'biling'",
        ),
        (DESK.replace("name: billing", "name: Billing Dept"), "agents[1].name: agent name 'Billing Dept'"),
        (
            DESK.replace("    voice: cedar", "    colour: red"),
            "agents[1].colour: Extra inputs are not permitted",
        ),
        (DESK + "start: nobody\n", "start: unknown agent 'nobody'"),
        ("name: x\nagents: [\n", "not valid YAML at line"),
        ("- just a list", "a scenario is a mapping"),
        (DESK.replace("tools: [calculate]", "tools: [transfer_to_x]"), "reserved for scenarios"),
    ],
)
def test_load_errors_name_the_file_and_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "desk.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as err:
        load_file(path)
    assert str(err.value).startswith(str(path)), err.value
    assert message in str(err.value), err.value


def test_catalog_checks_tools_and_guards_client_scenarios() -> None:
    tools = set(default_registry().tools)
    bad = parse_text(DESK.replace("[calculate]", "[launch_rockets]"), "desk.yaml")
    with pytest.raises(
        ScenarioError, match=r"desk.yaml: agents\[1\].tools\[0\]: unknown server tool 'launch_rockets'"
    ):
        ScenarioCatalog({"desk": bad}, tools)
    catalog = ScenarioCatalog({"desk": parse_text(DESK, "desk.yaml")}, tools, default="desk")
    assert catalog.choose(None).name == "desk"  # type: ignore[union-attr]
    assert catalog.choose("none") is None
    with pytest.raises(ScenarioError, match="unknown scenario 'nope'"):
        catalog.choose("nope")
    sent = parse_text(DESK + "supervisor:\n  base_url: http://10.0.0.1/v1\n", "sent")
    with pytest.raises(ScenarioError, match="may not name a supervisor base_url"):
        catalog.register(sent)
    ident = catalog.register(parse_text(DESK, "sent"))
    assert catalog.choose(ident).name == "desk"  # type: ignore[union-attr]


def test_word_list_matches_whole_words_and_phrases() -> None:
    words = WordList(["Paris", "legal advice"])
    assert words.check("It is in paris.") is not None
    assert words.check("Comparison shopping") is None  # not inside a word
    found = words.check("I cannot give LEGAL\n advice here")
    assert found is not None and found.detail.lower().split() == ["legal", "advice"]
    assert WordList([]).check("anything") is None


async def test_moderation_call_against_a_fake_server() -> None:
    seen: list[dict[str, Any]] = []
    app = FastAPI()

    @app.post("/v1/moderations")
    async def moderate(request: Request) -> dict[str, Any]:
        body = await request.json()
        seen.append({"body": body, "auth": request.headers.get("authorization")})
        flagged = "hate" in body["input"]
        return {
            "id": "modr-1",
            "model": body["model"],
            "results": [{"flagged": flagged, "categories": {"harassment": flagged, "violence": False}}],
        }

    async with serve_app(app) as server:
        check = ModerationCheck(Moderation(base_url=f"{server.http}/v1"))
        try:
            assert await check.check("A friendly sentence.") is None
            found = await check.check("Words of hate.")
            assert found is not None and (found.rule, found.detail) == ("moderation", "harassment")
            assert seen[0]["body"] == {"model": "omni-moderation-latest", "input": "A friendly sentence."}
        finally:
            await check.close()
    # A moderation server that is gone lets the text through (logged): no silent agent.
    down = ModerationCheck(Moderation(base_url=f"{server.http}/v1", timeout_s=1))
    assert await down.check("Words of hate.") is None
    await down.close()


def test_response_create_accepts_item_references() -> None:
    event = {"type": "response.create", "response": {"input": [{"type": "item_reference", "id": "item_1"}]}}
    assert parse_client_event(json.dumps(event))["response"]["input"][0]["id"] == "item_1"


async def test_engine_chat_completions_on_fake_models() -> None:
    async with serve_local() as srv:
        async with httpx.AsyncClient(base_url=srv.http) as http:
            r = await http.post(
                "/v1/chat/completions",
                json={"model": "any", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3},
            )
            assert r.status_code == 200, r.text
            body = r.json()
            assert (
                body["object"] == "chat.completion"
                and body["choices"][0]["message"]["content"] == "The capital of"
            )
            assert body["choices"][0]["finish_reason"] == "length"
            bad = await http.post(
                "/v1/chat/completions", json={"messages": [{"role": "robot", "content": "x"}]}
            )
            assert bad.status_code == 400 and bad.json()["error"]["param"] == "messages[0].role"


async def test_scenario_routes_and_minted_session() -> None:
    async with serve_local() as srv, httpx.AsyncClient(base_url=srv.http) as http:
        listed = (await http.get("/api/scenarios")).json()
        assert "customer_service" in {s["name"] for s in listed["scenarios"]}
        r = await http.post(
            "/api/session", json={"session": {"instructions": "ignored"}, "scenario": "customer_service"}
        )
        assert r.status_code == 200, r.text
        session = r.json()["session"]
        assert "front desk" in session["instructions"]
        names = {t.get("name") for t in session["tools"]}
        assert {"transfer_to_billing", "transfer_to_tech_support"} <= names
        assert "get_current_time" not in names  # only the greeter's tools
        r = await http.post("/api/session", json={"scenario": "nope"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_scenario"
        r = await http.post("/api/scenarios", content="name: x\nagents: []\n")
        assert r.status_code == 400 and "agents" in r.json()["error"]["message"]


async def test_handoff_and_guardrail_orchestration_over_the_relay_on_fake_models() -> None:
    """The fake LLM answers "The capital of France is Paris…" and calls a forced tool: enough to
    drive a handoff and a word-list trip through the relay in a second."""
    guarded = DESK + "guardrails:\n  words: [Paris]\n  max_retries: 0\n"
    async with serve_local() as srv:
        async with httpx.AsyncClient(base_url=srv.http) as http:
            ident = (await http.post("/api/scenarios", content=guarded)).json()["id"]
        client = AsyncOpenAI(
            api_key="x", base_url=f"{srv.http}/api/v1", websocket_base_url=f"{srv.ws}/api/v1"
        )
        async with client.realtime.connect(
            model="gpt-realtime", extra_query={"scenario": ident, "parley_events": "1"}
        ) as raw:
            c = Conn(raw)
            try:
                await c.log.wait_for("session.created")
                assert (await c.log.wait_for("parley.agent"))["agent"] == "greeter"
                await raw.session.update(
                    session={
                        "type": "realtime",
                        "output_modalities": ["text"],  # no reply may speak yet: the voice can change
                        "instructions": "mine",
                        "tool_choice": {"type": "function", "name": "transfer_to_billing"},
                    }
                )
                updated = await c.log.wait_for("session.updated")
                assert updated["session"]["instructions"] == "Greet and transfer."  # the scenario owns them
                await raw.conversation.item.create(
                    item={
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "billing please"}],
                    }
                )
                await raw.response.create()
                handoff = await c.log.wait_for("parley.handoff")
                # No assistant audio yet: the voice may still change.
                assert (handoff["to_agent"], handoff["voice"], handoff["voice_kept"]) == (
                    "billing",
                    "cedar",
                    False,
                )
                await c.log.wait_for(
                    "session.updated", lambda e: e["session"]["instructions"] == "You are billing."
                )
                await c.log.wait_for(
                    "session.updated", lambda e: e["session"]["audio"]["output"]["voice"] == "cedar"
                )
                # Billing's first reply (the fake says "Paris") trips the word list.
                trip = await c.log.wait_for("parley.guardrail", timeout=15)
                assert trip["detail"] == "Paris" and trip["agent"] == "billing"
                said = "".join(
                    e["delta"]
                    for e in c.log.of("response.output_text.delta")
                    if e["response_id"] == trip["response_id"]
                )
                assert "Paris" not in said
                await c.log.wait_for("conversation.item.done", lambda e: e["item"].get("role") == "system")
            finally:
                await c.close()


def test_serve_and_talk_scenario_options(tmp_path: Path) -> None:
    import argparse

    from parley.client import cli as talk_cli
    from parley.server import cli as serve_cli

    def parse(module: Any, *argv: str) -> argparse.Namespace:
        parser = argparse.ArgumentParser()
        module.configure(parser)
        return parser.parse_args(list(argv))

    config = serve_cli.config_from_args(parse(serve_cli, "--scenario", "customer_service"))
    assert (config.default_scenario, config.scenario_files) == ("customer_service", [])
    path = tmp_path / "desk.yaml"
    path.write_text(DESK)
    config = serve_cli.config_from_args(parse(serve_cli, "--scenario", str(path)))
    assert (config.default_scenario, config.scenario_files) == ("desk", [str(path)])
    path.write_text(DESK.replace("agent: billing", "agent: nobody"))
    with pytest.raises(ScenarioError, match=r"desk\.yaml: agents"):
        serve_cli.config_from_args(parse(serve_cli, "--scenario", str(path)))
    with pytest.raises(SystemExit, match="--scenario runs on a `parley serve` server"):
        talk_cli._resolve_target(parse(talk_cli, "--scenario", "customer_service"))
    _, _, options = talk_cli._resolve_target(
        parse(talk_cli, "--serve", "http://127.0.0.1:9", "--scenario", "desk")
    )
    assert options["query"] == {"scenario": "desk"}
