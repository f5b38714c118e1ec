"""Scenarios in ``parley serve``: agents that hand the conversation to each other, a supervisor
text model, and output guardrails, run server-side for any Realtime client.

One :class:`ScenarioSession` per realtime session (a relayed WebSocket, or the
sideband of a WebRTC call). It works through the same two hooks as the server
tools: it watches the upstream's events and sends client events of its own.

* **Handoffs** are server tools (``transfer_to_<agent>``) in a per-session
  :class:`ScenarioTools` registry, so :class:`~parley.server.tools.ToolRunner`
  answers them like any other: the tool sends ``session.update`` (the new
  agent's instructions, tools and, while no assistant audio exists, voice),
  the runner sends the call's output and ``response.create``, and the new agent
  answers. The conversation stays: it is the same session.
* **Supervisor**: ``ask_supervisor`` asks a chat-completions model with the
  transcript so far (kept here from the events) and returns its answer, which
  the agent then speaks; the tool's filler is said while it thinks.
* **Guardrails** read the assistant transcript deltas as they stream. On a
  violation: ``response.cancel``; over the WebSocket relay the rest of that
  reply's audio is no longer forwarded and the item is truncated to what the
  client has played (estimated from what was forwarded and when), over WebRTC
  ``output_audio_buffer.clear`` (the server truncates to what it sent); then a
  system note and ``response.create`` so the agent corrects itself.

Clients that opt in (``?parley_events=1`` on the relay; the call's event
stream for WebRTC pages) also receive ``parley.agent``, ``parley.handoff``,
``parley.supervisor`` and ``parley.guardrail``; standard clients never do.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from parley.scenarios.schema import SUPERVISOR_TOOL, TRANSFER_PREFIX, Agent, Scenario, ScenarioError
from parley.server.guardrails import SENTENCE_END, Guard, Violation
from parley.server.supervisor import ChatEndpoint, Supervisor, SupervisorError, Turn, endpoint_for
from parley.server.tools import EVENT_PREFIX, ServerTool, ToolContext, ToolRegistry

log = logging.getLogger(__name__)

Notify = Callable[[dict[str, Any]], Awaitable[None]]
Verdict = Literal["pass", "observe", "drop"]

# Events a scenario session reads (besides the audio deltas it only measures).
OBSERVED = frozenset(
    {
        "session.created",
        "session.updated",
        "response.created",
        "response.done",
        "response.content_part.added",
        "response.output_audio_transcript.delta",
        "response.output_text.delta",
        "conversation.item.done",
        "conversation.item.input_audio_transcription.completed",
    }
)
_TYPE_FIRST = '{"type":"'
_AUDIO_DELTA = "response.output_audio.delta"
_BYTES_PER_MS = {"audio/pcm": 48.0, "audio/pcmu": 8.0, "audio/pcma": 8.0}
MAX_HANDOFF_ITEMS = 20
STOP_TIMEOUT_S = 10.0
INLINE_TTL_S = 600
MAX_INLINE = 64


def _type_of(text: str) -> str | None:
    if text.startswith(_TYPE_FIRST):
        end = text.find('"', len(_TYPE_FIRST))
        if end > 0:
            return text[len(_TYPE_FIRST) : end]
    return None


def _string_field(text: str, name: str) -> str | None:
    """A string field of a JSON object without parsing it (base64 never holds a quote)."""
    marker = f'"{name}":"'
    start = text.find(marker)
    if start < 0:
        return None
    start += len(marker)
    end = text.find('"', start)
    return text[start:end] if end > 0 else None


def transfer_tool_name(agent: str) -> str:
    return f"{TRANSFER_PREFIX}{agent}"


def _title(agent: Agent) -> str:
    return agent.title or agent.name.replace("_", " ").capitalize()


# --- the catalogue ------------------------------------------------------------------


class ScenarioCatalog:
    """The scenarios this server runs: shipped, from ``--scenario`` files, and ones clients
    registered (``POST /api/scenarios``, kept for :data:`INLINE_TTL_S`)."""

    def __init__(
        self, scenarios: dict[str, Scenario], server_tools: set[str], default: str | None = None
    ) -> None:
        self.server_tools = server_tools
        for scenario in scenarios.values():
            scenario.check_tools(server_tools)
        self.scenarios = dict(scenarios)
        if default is not None and default not in self.scenarios:
            raise ScenarioError(f"the default scenario {default!r} is not loaded")
        self.default = default
        self._inline: dict[str, tuple[float, Scenario]] = {}

    def summaries(self) -> list[dict[str, Any]]:
        return [s.summary() for s in self.scenarios.values()]

    def choose(self, requested: str | None) -> Scenario | None:
        """The scenario a session asked for: None → the server's default; "" or "none" → none."""
        if requested is None:
            return self.scenarios.get(self.default) if self.default else None
        if requested in ("", "none"):
            return None
        if requested in self.scenarios:
            return self.scenarios[requested]
        self._purge()
        if requested in self._inline:
            return self._inline[requested][1]
        raise ScenarioError(
            f"unknown scenario {requested!r} (this server has: {', '.join(self.scenarios) or 'none'})"
        )

    def register(self, scenario: Scenario) -> str:
        """A client's own scenario; its id names it for :data:`INLINE_TTL_S` seconds.

        A client may not point the server at other hosts: its supervisor and
        moderation use the server's defaults."""
        if scenario.supervisor.base_url or (scenario.guardrails and scenario.guardrails.moderation):
            raise ScenarioError(
                f"{scenario.name}: a scenario sent by a client may not name a supervisor base_url or a "
                "moderation server (the server uses its own)"
            )
        scenario.check_tools(self.server_tools)
        self._purge()
        if len(self._inline) >= MAX_INLINE:
            oldest = min(self._inline, key=lambda k: self._inline[k][0])
            del self._inline[oldest]
        ident = f"sc_{secrets.token_urlsafe(12)}"
        self._inline[ident] = (time.monotonic() + INLINE_TTL_S, scenario)
        return ident

    def _purge(self) -> None:
        now = time.monotonic()
        for key in [k for k, (t, _) in self._inline.items() if t <= now]:
            del self._inline[key]


# --- tools of one session -------------------------------------------------------------


class ScenarioTools(ToolRegistry):
    """The server's tools plus the scenario's (transfers, supervisor); a session is offered the
    current agent's only, but a call to any of them is answered."""

    def __init__(self, base: ToolRegistry, session: ScenarioSession) -> None:
        self.base = base
        self.session = session
        scenario = session.scenario
        own: list[ServerTool] = []
        for target in scenario.agents:
            own.append(
                ServerTool(
                    transfer_tool_name(target.name),
                    f"Transfer the caller to {_title(target)}. {target.handoff_description}".strip(),
                    {"type": "object", "properties": {}, "required": []},
                    self._transfer_fn(target.name),
                    follow_up=session.handoff_input,
                )
            )
        own.append(
            ServerTool(
                SUPERVISOR_TOOL,
                "Ask your supervisor what to say next, for any question you cannot answer yourself.",
                {
                    "type": "object",
                    "properties": {
                        "question": {"type": "string", "description": "what the caller wants, in a few words"}
                    },
                    "required": [],
                },
                self._ask_supervisor,
                timeout=scenario.supervisor.timeout_s + 1,
                filler=scenario.supervisor.filler,
            )
        )
        super().__init__([*base.tools.values(), *own])

    def _transfer_fn(self, name: str) -> Callable[[dict[str, Any], ToolContext], Awaitable[Any]]:
        async def transfer(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
            await self.session.switch_to(name)
            return {"assistant": name}  # the agents SDKs' transfer message

        return transfer

    async def _ask_supervisor(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        return await self.session.ask_supervisor(str(args.get("question") or ""))

    def agent_definitions(self, agent: Agent) -> list[dict[str, Any]]:
        defs: list[dict[str, Any]] = [self.base.tools[n].definition() for n in agent.tools]
        defs += [{"type": "function", **t.model_dump()} for t in agent.client_tools]
        defs += [{"type": "mcp", **m.model_dump(exclude_none=True)} for m in agent.mcp]
        scenario = self.session.scenario
        for h in agent.handoffs:
            target = scenario.agent(h.agent)
            tool = self.tools[transfer_tool_name(h.agent)].definition()
            if h.description:
                tool["description"] = f"Transfer the caller to {_title(target)}. {h.description}"
            defs.append(tool)
        if agent.supervisor:
            defs.append(self.tools[SUPERVISOR_TOOL].definition())
        return defs

    def definitions(self) -> list[dict[str, Any]]:
        return self.agent_definitions(self.session.agent)

    def merge(self, tools: Any) -> list[Any]:
        mine = self.definitions()
        names = {t.get("name") for t in mine} | set(self.tools)
        page = (
            [t for t in tools if not (isinstance(t, dict) and t.get("name") in names)]
            if isinstance(tools, list)
            else []
        )
        # A page's MCP server of the same label as the agent's is the agent's.
        labels = {t.get("server_label") for t in mine if t.get("type") == "mcp"}
        page = [t for t in page if not (isinstance(t, dict) and t.get("server_label") in labels)]
        return [*page, *mine]

    def drift(self, session: dict[str, Any]) -> dict[str, Any] | None:
        restore = super().drift(session) or {}
        if session.get("instructions") != self.session.agent.instructions:
            restore["instructions"] = self.session.agent.instructions
        return restore or None

    def rewrite(self, session: dict[str, Any]) -> dict[str, Any]:
        """The scenario owns instructions, voice and tools: a client's own are replaced."""
        session = super().rewrite(session)
        if "instructions" in session:
            session["instructions"] = self.session.agent.instructions
        out = (session.get("audio") or {}).get("output") if isinstance(session.get("audio"), dict) else None
        if isinstance(out, dict) and "voice" in out:
            voice = self.session.voice_for(self.session.agent)
            if voice:
                out["voice"] = voice
            else:
                del out["voice"]
        return session


def start_scenario(session: dict[str, Any], scenario: Scenario, base: ToolRegistry) -> None:
    """Set a session being minted to start with the scenario's first agent: its instructions,
    voice and tools (the page's own tools kept) replace the page's."""
    probe = ScenarioSession(scenario, base, _no_send)
    fields = probe.agent_fields(scenario.first, session.get("tools"), with_voice=True)
    session["instructions"] = fields["instructions"]
    session["tools"] = fields["tools"]
    voice = (fields.get("audio") or {}).get("output", {}).get("voice")
    if voice:
        audio: dict[str, Any] = session["audio"] if isinstance(session.get("audio"), dict) else {}
        output: dict[str, Any] = audio["output"] if isinstance(audio.get("output"), dict) else {}
        session["audio"] = {**audio, "output": {**output, "voice": voice}}


def agent_sessions(page: dict[str, Any], scenario: Scenario, base: ToolRegistry) -> list[dict[str, Any]]:
    """The session each of the scenario's agents talks under, the first agent's first.

    The first is what :func:`start_scenario` mints; the others are what a handoff switches
    to. ``parley serve`` has the engine evaluate these prompts at start-up, so neither a
    scenario's first turn nor the first turn after a handoff waits for them.
    """
    probe = ScenarioSession(scenario, base, _no_send)
    agents = [scenario.first, *(a for a in scenario.agents if a.name != scenario.first.name)]
    sessions = []
    for agent in agents:
        fields = probe.agent_fields(agent, page.get("tools"), with_voice=False)
        sessions.append({**page, "instructions": fields["instructions"], "tools": fields["tools"]})
    return sessions


async def _no_send(text: str) -> None:
    return None


# --- one session ------------------------------------------------------------------------


@dataclass
class _Reply:
    """What the guardrails know about one response."""

    id: str
    item_id: str | None = None
    text: str = ""
    checked_chars: int = 0  # text the moderation call has seen
    checking: asyncio.Task[Any] | None = None
    first_audio: float | None = None  # monotonic time the first audio delta passed the relay
    audio_b64: int = 0  # base64 characters forwarded
    tripped: Violation | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # its response.done came
    done: bool = False
    status: str = ""
    out_of_band: bool = False


@dataclass
class _Counters:
    handoffs: int = 0
    supervisor_calls: int = 0
    trips: int = 0


class ScenarioSession:
    def __init__(
        self,
        scenario: Scenario,
        base: ToolRegistry,
        send: Callable[[str], Awaitable[None]],
        *,
        notify: Notify | None = None,
        transport: Literal["websocket", "webrtc"] = "websocket",
        chat: ChatEndpoint | None = None,
    ) -> None:
        self.scenario = scenario
        self.agent = scenario.first
        self.send_text = send
        self.notify_fn = notify
        self.transport = transport
        self.tools = ScenarioTools(base, self)
        self.supervisor = (
            Supervisor(scenario.supervisor, endpoint_for(scenario.supervisor, chat)) if chat else None
        )
        self.guard = Guard(scenario.guardrails) if scenario.guardrails else None
        self.voice: str | None = None  # the session's voice, from session.updated
        self.audio_present = False  # assistant audio exists: the voice can no longer change
        self.output_format = "audio/pcm"
        self.page_tools: list[Any] = []
        self.turns: dict[str, Turn] = {}  # item id → what was said, in order
        self.counters = _Counters()
        self._replies: dict[str, _Reply] = {}
        self._trips_in_row = 0
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- what the session is set to

    def voice_for(self, agent: Agent) -> str | None:
        """The voice to ask for: the agent's, unless assistant audio already exists."""
        if self.audio_present:
            return self.voice
        return agent.voice or self.voice

    def agent_fields(self, agent: Agent, page_tools: Any = None, *, with_voice: bool) -> dict[str, Any]:
        tools = self.tools.agent_definitions(agent)
        names = {t.get("name") for t in tools} | set(self.tools.tools)
        page = [t for t in page_tools or [] if not (isinstance(t, dict) and t.get("name") in names)]
        fields: dict[str, Any] = {
            "type": "realtime",
            "instructions": agent.instructions,
            "tools": [*page, *tools],
        }
        voice = agent.voice if with_voice else None
        if voice and voice != self.voice:
            fields["audio"] = {"output": {"voice": voice}}
        return fields

    def initial_update(self, created: dict[str, Any]) -> dict[str, Any]:
        """The ``session.update`` that starts the scenario on a new session."""
        self._read_session(created)
        page = [
            t for t in created.get("tools") or [] if isinstance(t, dict) and t.get("name") not in self.tools
        ]
        return self.agent_fields(self.agent, page, with_voice=not self.audio_present)

    def agent_event(self) -> dict[str, Any]:
        return {
            "type": "parley.agent",
            "scenario": self.scenario.name,
            "agent": self.agent.name,
            "title": _title(self.agent),
            "voice": self.voice_for(self.agent),
        }

    # -- handoffs and the supervisor

    async def switch_to(self, name: str) -> None:
        target = self.scenario.agent(name)
        previous = self.agent
        self.agent = target
        self.counters.handoffs += 1
        voice_changes = bool(target.voice) and target.voice != self.voice and not self.audio_present
        fields = self.agent_fields(target, self.page_tools, with_voice=False)
        await self._send({"type": "session.update", "session": fields})
        if voice_changes:
            # On its own: were the voice refused after all, the agent's instructions and tools
            # must still switch.
            voice = {"type": "realtime", "audio": {"output": {"voice": target.voice}}}
            await self._send({"type": "session.update", "session": voice})
        await self.notify(
            {
                "type": "parley.handoff",
                "scenario": self.scenario.name,
                "from_agent": previous.name,
                "to_agent": target.name,
                "title": _title(target),
                "voice": target.voice if voice_changes else self.voice,
                # A voice cannot change once the assistant has spoken (OpenAI's rule, the engine's too).
                "voice_kept": bool(target.voice) and not voice_changes and target.voice != self.voice,
            }
        )

    def handoff_input(self) -> dict[str, Any]:
        """The new agent's first reply reads the conversation's messages, not the transfer call
        and its output: given those, the local model read the output aloud or wrote JSON instead
        of greeting the caller. The reply still joins the conversation."""
        messages = [i for i, t in self.turns.items() if t.text][-MAX_HANDOFF_ITEMS:]
        # Its first words greet the caller; its tools are there from the next turn (with them, the
        # local model called calculate on "I was charged twice" before saying anything).
        return {"input": [{"type": "item_reference", "id": i} for i in messages], "tool_choice": "none"}

    async def ask_supervisor(self, question: str) -> dict[str, Any]:
        if self.supervisor is None:
            return {"error": "no supervisor is configured on this server"}
        self.counters.supervisor_calls += 1
        await self.notify({"type": "parley.supervisor", "status": "asked", "question": question})
        t0 = time.perf_counter()
        try:
            answer = await self.supervisor.ask(list(self.turns.values()), question)
        except SupervisorError as exc:
            await self.notify({"type": "parley.supervisor", "status": "failed", "error": str(exc)})
            return {"error": str(exc)}
        ms = round((time.perf_counter() - t0) * 1000)
        await self.notify({"type": "parley.supervisor", "status": "answered", "answer": answer, "ms": ms})
        return {"answer": answer, "note": "Say this answer to the caller in your own words."}

    # -- reading the upstream's events

    def peek(self, text: str) -> Verdict:
        """Decide about a raw upstream frame without parsing audio: pass it, read it, or drop it
        (the audio of a reply a guardrail stopped, over the WebSocket relay)."""
        kind = _type_of(text)
        if kind == _AUDIO_DELTA:
            return self._audio(text)
        if kind is None:
            return "observe" if any(f'"{k}"' in text for k in OBSERVED) else "pass"
        return "observe" if kind in OBSERVED else "pass"

    def _audio(self, text: str) -> Verdict:
        if self.guard is None:
            return "pass"
        reply = self._replies.get(_string_field(text, "response_id") or "")
        if reply is None:
            return "pass"
        if reply.tripped is not None:
            return "drop"
        delta = _string_field(text, "delta")
        reply.audio_b64 += len(delta or "")
        if reply.first_audio is None:
            reply.first_audio = time.monotonic()
        return "pass"

    def observe(self, event: dict[str, Any]) -> bool:
        """Act on one upstream event; False if the client must not see it."""
        kind = event.get("type")
        if kind in ("session.created", "session.updated"):
            self._read_session(event.get("session") or {})
        elif kind == "response.created":
            response = event.get("response") or {}
            rid = str(response.get("id"))
            self._replies[rid] = _Reply(rid, out_of_band=response.get("conversation_id") is None)
            # The engine locks the voice as soon as a reply that may speak starts (OpenAI once
            # audio exists): the stricter rule keeps a handoff from asking for a refused change.
            if "audio" in (response.get("output_modalities") or ["audio"]):
                self.audio_present = True
        elif kind == "response.content_part.added":
            if (event.get("part") or {}).get("type") in ("audio", "output_audio"):
                self.audio_present = True
        elif kind in ("response.output_audio_transcript.delta", "response.output_text.delta"):
            return self._text(event)
        elif kind == "response.done":
            self._done(event.get("response") or {})
        elif kind == "conversation.item.done":
            self._item(event.get("item") or {})
        elif kind == "conversation.item.input_audio_transcription.completed":
            turn = self.turns.get(str(event.get("item_id")))
            if turn is not None:
                turn.text = str(event.get("transcript") or "").strip()
        return True

    def _read_session(self, session: dict[str, Any]) -> None:
        out = ((session.get("audio") or {}).get("output")) or {}
        voice = out.get("voice")
        self.voice = voice.get("id") if isinstance(voice, dict) else voice
        fmt = out.get("format") or {}
        if isinstance(fmt, dict) and fmt.get("type") in _BYTES_PER_MS:
            self.output_format = fmt["type"]
        tools = session.get("tools")
        if isinstance(tools, list):
            names = set(self.tools.tools)
            mine = {t.get("server_label") for t in self.tools.definitions() if t.get("type") == "mcp"}
            self.page_tools = [
                t
                for t in tools
                if isinstance(t, dict) and t.get("name") not in names and t.get("server_label") not in mine
            ]

    def _item(self, item: dict[str, Any]) -> None:
        if item.get("type") != "message" or item.get("role") not in ("user", "assistant"):
            return
        parts = []
        for part in item.get("content") or []:
            parts.append(part.get("text") or part.get("transcript") or "")
        self.turns[str(item.get("id"))] = Turn(str(item["role"]), " ".join(p for p in parts if p).strip())

    # -- guardrails

    def _text(self, event: dict[str, Any]) -> bool:
        reply = self._replies.get(str(event.get("response_id")))
        if self.guard is None or reply is None:
            return True
        if reply.tripped is not None:
            return False  # the rest of a stopped reply is not shown either
        reply.item_id = str(event.get("item_id"))
        reply.text += str(event.get("delta") or "")
        if self._trips_in_row > self.guard.config.max_retries:
            return True
        violation = self.guard.quick(reply.text)
        if violation is not None:
            self._trip(reply, violation)
            return False
        if self.guard.moderation and SENTENCE_END.search(reply.text) and reply.checking is None:
            reply.checking = self._spawn(self._moderate(reply))
        return True

    async def _moderate(self, reply: _Reply) -> None:
        assert self.guard is not None
        while reply.tripped is None and reply.checked_chars < len(reply.text):
            text = reply.text
            reply.checked_chars = len(text)
            violation = await self.guard.slow(text)
            if violation is not None and reply.tripped is None:
                self._trip(reply, violation)
                return
            if not reply.done and not SENTENCE_END.search(reply.text):
                break  # the next sentence end checks again
        reply.checking = None
        if reply.done and reply.tripped is None:
            self._trips_in_row = 0

    def _trip(self, reply: _Reply, violation: Violation) -> None:
        reply.tripped = violation
        self._trips_in_row += 1
        self.counters.trips += 1
        log.info("guardrail %s stopped response %s (%s)", violation.rule, reply.id, violation.detail)
        self._spawn(self._stop(reply, violation))

    def _heard_ms(self, reply: _Reply) -> int:
        """What the client has played of the reply, as well as the relay can know: no more than
        it forwarded, and no more than the time since the first audio passed (played in real time)."""
        if reply.first_audio is None:
            return 0
        sent = reply.audio_b64 * 3 / 4 / _BYTES_PER_MS[self.output_format]
        elapsed = (time.monotonic() - reply.first_audio) * 1000
        return int(max(0.0, min(sent, elapsed)))

    async def _stop(self, reply: _Reply, violation: Violation) -> None:
        """Cancel (the reply may have finished meanwhile: then the cancel is refused, harmlessly),
        cut what was not heard once the reply has ended, tell the client, let the agent correct."""
        if not reply.done:
            await self._send({"type": "response.cancel", "response_id": reply.id})
            if self.transport == "webrtc" and reply.item_id:
                # The server knows what it sent over RTP: it flushes the rest and truncates there.
                await self._send({"type": "output_audio_buffer.clear"})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reply.finished.wait(), STOP_TIMEOUT_S)
        heard: int | None = None
        if reply.item_id and self.transport == "websocket":
            heard = self._heard_ms(reply)
            if heard > 0:
                await self._send(
                    {
                        "type": "conversation.item.truncate",
                        "item_id": reply.item_id,
                        "content_index": 0,
                        "audio_end_ms": heard,
                    }
                )
            else:
                # Nothing was heard: the model must not remember having said it.
                await self._send({"type": "conversation.item.delete", "item_id": reply.item_id})
        await self.notify(
            {
                "type": "parley.guardrail",
                "rule": violation.rule,
                "detail": violation.detail,
                "agent": self.agent.name,
                "response_id": reply.id,
                "item_id": reply.item_id,
                "audio_end_ms": heard,
            }
        )
        await self._correct(reply)

    def _done(self, response: dict[str, Any]) -> None:
        reply = self._replies.pop(str(response.get("id")), None)
        if reply is None:
            return
        reply.done = True
        reply.finished.set()
        reply.status = str(response.get("status"))
        if (
            reply.tripped is None
            and reply.checking is None
            and reply.status == "completed"
            and not reply.out_of_band
        ):
            if self.guard and self.guard.moderation and reply.checked_chars < len(reply.text):
                reply.checking = self._spawn(self._moderate(reply))
            else:
                self._trips_in_row = 0

    async def _correct(self, reply: _Reply) -> None:
        """A system note on what went wrong, then a new reply (unless the retries are spent)."""
        if self.guard is None or reply.tripped is None or reply.out_of_band:
            return
        await self._send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "system",
                    "content": [{"type": "input_text", "text": self.guard.correction(reply.tripped)}],
                },
            }
        )
        if self._trips_in_row <= self.guard.config.max_retries:
            await self._send({"type": "response.create"})

    # -- plumbing

    async def notify(self, event: dict[str, Any]) -> None:
        if self.notify_fn is not None:
            with contextlib.suppress(Exception):
                await self.notify_fn(event)

    async def _send(self, event: dict[str, Any]) -> None:
        event = {**event, "event_id": f"{EVENT_PREFIX}scenario_{next(self._ids)}"}
        await self.send_text(json.dumps(event, separators=(",", ":")))

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("scenario task failed: %r", exc)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.supervisor is not None:
            await self.supervisor.close()
        if self.guard is not None:
            await self.guard.close()


@dataclass
class ScenarioFactory:
    """Makes the scenario session of a new realtime session (what the relays are given)."""

    scenario: Scenario
    base: ToolRegistry
    chat: ChatEndpoint | None
    extras: dict[str, Any] = field(default_factory=dict)

    def __call__(
        self,
        send: Callable[[str], Awaitable[None]],
        notify: Notify | None,
        transport: Literal["websocket", "webrtc"],
    ) -> ScenarioSession:
        return ScenarioSession(
            self.scenario, self.base, send, notify=notify, transport=transport, chat=self.chat
        )
