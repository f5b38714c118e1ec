"""Scenarios through ``parley serve`` on real models, driven by openai-python over the relay.

* customer_service: a spoken request for billing is handed from the greeter to the billing
  agent (``transfer_to_billing``, ``session.update``, ``parley.handoff``) and answered there;
* chat_supervisor: ``ask_supervisor`` asks the engine's LLM (``/v1/chat/completions``) and
  the agent speaks after the filler;
* guardrails: a client-registered scenario forbids a word; the reply that says it is
  cancelled, none of its audio reaches the client after the word, it is truncated or
  deleted, and the agent is told to correct itself.

Every standard event is validated strictly; ``parley.*`` events arrive only because the
client asks for them (``parley_events=1``).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pytest
from openai import AsyncOpenAI

from parley.bench.speech import silence, synthesize
from tests.server.test_serve_models import TRANSCRIPTION, Conn, reply_audio
from tests.support.pacing import stream_pcm
from tests.support.serve import Serve
from tests.support.text import recall

pytestmark = [pytest.mark.models]


def client(serve: Serve) -> AsyncOpenAI:
    return AsyncOpenAI(
        api_key="unused", base_url=f"{serve.http}/api/v1", websocket_base_url=f"{serve.ws}/api/v1"
    )


def spoken_message(event: dict[str, Any]) -> bool:
    out = event["response"]["output"]
    return bool(out) and out[0]["type"] == "message" and (event["response"].get("metadata") or {}) == {}


async def say_text(raw: Any, text: str) -> None:
    await raw.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    )
    await raw.response.create()


async def test_spoken_handoff_from_greeter_to_billing(serve: Serve) -> None:
    query = {"scenario": "customer_service", "parley_events": "1"}
    async with client(serve).realtime.connect(model="gpt-realtime", extra_query=query) as raw:
        c = Conn(raw)
        try:
            created = await c.log.wait_for("session.created")
            agent = await c.log.wait_for("parley.agent")
            assert agent["agent"] == "greeter"
            tools = {t.get("name") for t in created["session"]["tools"]}
            assert {"transfer_to_billing", "transfer_to_tech_support"} <= tools
            assert "Parley Telecom" in created["session"]["instructions"]
            await raw.session.update(session={"type": "realtime", "audio": {"input": TRANSCRIPTION}})
            await c.log.wait_for("session.updated")

            question = "Hello, I want to talk to billing about my invoice."
            await stream_pcm(c.append, np.concatenate([silence(0.5), synthesize(question), silence(1.2)]))
            heard = await c.log.wait_for("conversation.item.input_audio_transcription.completed", timeout=45)
            assert recall(question, heard["transcript"]) >= 0.7, heard
            call = await c.log.wait_for(
                "response.output_item.done", lambda e: e["item"]["type"] == "function_call", timeout=45
            )
            assert call["item"]["name"] == "transfer_to_billing"
            handoff = await c.log.wait_for("parley.handoff", timeout=10)
            assert (handoff["from_agent"], handoff["to_agent"]) == ("greeter", "billing")
            switched = await c.log.wait_for(
                "session.updated", lambda e: "billing specialist" in e["session"]["instructions"], timeout=10
            )
            assert "transfer_to_greeter" in {t.get("name") for t in switched["session"]["tools"]}
            assert "transfer_to_billing" not in {t.get("name") for t in switched["session"]["tools"]}
            output = await c.log.wait_for(
                "conversation.item.done", lambda e: e["item"]["type"] == "function_call_output"
            )
            assert json.loads(output["item"]["output"])["assistant"] == "billing"

            # The billing agent answers, in speech, in the same conversation.
            answer = await c.log.wait_for("response.done", spoken_message, timeout=45)
            assert answer["response"]["status"] == "completed"
            transcript = answer["response"]["output"][0]["content"][0]["transcript"]
            assert transcript.strip(), answer
            assert len(reply_audio(c.log, answer["response"]["id"])) > 24000 * 0.5
            assert not c.log.of("error"), c.log.of("error")
        finally:
            await c.close()


async def test_supervisor_turn(serve: Serve) -> None:
    query = {"scenario": "chat_supervisor", "parley_events": "1"}
    async with client(serve).realtime.connect(model="gpt-realtime", extra_query=query) as raw:
        c = Conn(raw)
        try:
            await c.log.wait_for("session.created")
            await raw.session.update(session={"type": "realtime", "output_modalities": ["text"]})
            await c.log.wait_for("session.updated")
            await say_text(raw, "How much does the Plus plan cost per month?")
            call = await c.log.wait_for(
                "response.output_item.done", lambda e: e["item"]["type"] == "function_call", timeout=45
            )
            assert call["item"]["name"] == "ask_supervisor"
            answered = await c.log.wait_for(
                "parley.supervisor", lambda e: e["status"] == "answered", timeout=30
            )
            assert "35" in answered["answer"], answered  # the supervisor's instructions hold the price
            # The filler is said out of band while the supervisor thinks…
            filler = await c.log.wait_for(
                "response.done", lambda e: (e["response"].get("metadata") or {}).get("parley") == "filler"
            )
            assert filler["response"]["conversation_id"] is None
            # …then the agent speaks from the supervisor's answer.
            output = await c.log.wait_for(
                "conversation.item.done", lambda e: e["item"]["type"] == "function_call_output", timeout=30
            )
            assert "35" in json.loads(output["item"]["output"])["answer"]
            final = await c.log.wait_for(
                "response.done",
                lambda e: spoken_message(e) and e["response"]["id"] != filler["response"]["id"],
                timeout=45,
            )
            text = final["response"]["output"][0]["content"][0]["text"]
            assert text.strip()
            assert not c.log.of("error"), c.log.of("error")
        finally:
            await c.close()


GUARDED = """
name: geography_guarded
agents:
  - name: guide
    instructions: You answer geography questions in one short sentence.
guardrails:
  words: [Paris]
  max_retries: 1
"""


async def test_guardrail_trip_cancels_truncates_and_corrects(serve: Serve) -> None:
    async with httpx.AsyncClient(base_url=serve.http) as http:
        r = await http.post("/api/scenarios", content=GUARDED)
        assert r.status_code == 200, r.text
        ident = r.json()["id"]
    query = {"scenario": ident, "parley_events": "1"}
    async with client(serve).realtime.connect(model="gpt-realtime", extra_query=query) as raw:
        c = Conn(raw)
        try:
            await c.log.wait_for("session.created")
            await say_text(raw, "What is the capital of France?")
            trip = await c.log.wait_for("parley.guardrail", timeout=45)
            assert trip["rule"] == "words" and trip["detail"].lower() == "paris"
            stopped = await c.log.wait_for(
                "response.done", lambda e: e["response"]["id"] == trip["response_id"], timeout=10
            )
            # Cancelled, unless the whole (one-clause) reply was already generated when the cancel came.
            assert stopped["response"]["status"] in ("cancelled", "completed")
            # Nothing from the forbidden word on reached the client: no transcript delta holds it,
            # and audio came only with the clauses before it (the engine sends a clause's transcript
            # delta just before its audio).
            said = "".join(
                e["delta"]
                for e in c.log.of("response.output_audio_transcript.delta")
                if e["response_id"] == trip["response_id"]
            )
            assert "paris" not in said.lower(), said
            if not said:
                assert not len(reply_audio(c.log, trip["response_id"]))
            # What was not heard is gone from what the model remembers.
            if trip["audio_end_ms"]:
                await c.log.wait_for("conversation.item.truncated", lambda e: e["item_id"] == trip["item_id"])
            else:
                await c.log.wait_for("conversation.item.deleted", lambda e: e["item_id"] == trip["item_id"])
            note = await c.log.wait_for(
                "conversation.item.done",
                lambda e: e["item"]["type"] == "message" and e["item"]["role"] == "system",
            )
            assert "Paris" in note["item"]["content"][0]["text"]
            # The agent tries again.
            await c.log.wait_for(
                "response.created", lambda e: e["response"]["id"] != trip["response_id"], timeout=10
            )
            retry = await c.log.wait_for(
                "response.done", lambda e: e["response"]["id"] != trip["response_id"], timeout=45
            )
            assert retry["response"]["status"] in ("completed", "cancelled")
            assert not c.log.of("error"), c.log.of("error")
        finally:
            await c.close()
