"""Scenario files: several agents, each with its own instructions, voice and tools, who hand the
conversation to each other; an optional supervisor text model; output guardrails.

A scenario is YAML (or JSON, which is YAML too) checked by the pydantic models below.
Every load error names the file and the field: ``desk.yaml: agents[1].handoffs[0].agent:
unknown agent 'biling' (agents: greeter, billing, tech)``.

The wire shapes built from it (session fields, tool definitions) live with their
users (``parley.server.scenario``); this module only describes and checks.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_FILE_BYTES = 256 * 1024
TRANSFER_PREFIX = "transfer_to_"
SUPERVISOR_TOOL = "ask_supervisor"


class ScenarioError(ValueError):
    """A scenario that cannot be used, with the file and field in the message."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_name(value: str, what: str) -> str:
    if not NAME.match(value):
        raise ValueError(
            f"{what} {value!r} must be lower-case letters, digits and '_', starting with a letter "
            "(at most 40), so that transfer_to_<name> is a valid tool name"
        )
    return value


class Handoff(_Strict):
    """A colleague this agent may pass the conversation to (a ``transfer_to_<agent>`` tool)."""

    agent: str
    #: When to transfer, in the words a user would use: the model reads it to decide.
    description: str = ""


class ClientTool(_Strict):
    """A function tool the client (the page, an SDK) answers itself; serve only offers it."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class McpServer(_Strict):
    """An MCP server whose tools this agent may use (the realtime server connects to it)."""

    server_label: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    server_url: str = Field(pattern=r"^https?://")
    allowed_tools: list[str] | None = None
    require_approval: str = Field(default="never", pattern=r"^(always|never)$")
    server_description: str | None = None


class Agent(_Strict):
    name: str
    instructions: str = Field(min_length=1, max_length=8000)
    #: One of the Realtime voices. A voice can only change before the first assistant audio,
    #: so after that a handoff keeps the voice (as on OpenAI; the session reports which).
    voice: str | None = None
    #: Shown to the user and used in the default handoff description.
    title: str | None = None
    handoff_description: str = ""
    #: Server tools by name (``parley serve``'s registry: get_current_time, calculate, …).
    tools: list[str] = Field(default_factory=list)
    client_tools: list[ClientTool] = Field(default_factory=list)
    mcp: list[McpServer] = Field(default_factory=list)
    handoffs: list[Handoff] = Field(default_factory=list)
    #: Offer ``ask_supervisor``: a text model decides the hard turns (see :class:`Supervisor`).
    supervisor: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value, "agent name")


class Supervisor(_Strict):
    """The text model behind ``ask_supervisor``: any OpenAI-compatible chat-completions server.

    With no ``base_url`` it is the realtime upstream's own: the local engine's LLM
    (``/v1/chat/completions``), or OpenAI with the server's key."""

    base_url: str | None = Field(default=None, pattern=r"^https?://")
    model: str | None = None
    #: Name of an environment variable holding the key for ``base_url`` (never the key itself).
    api_key_env: str | None = None
    instructions: str = (
        "You are the supervisor of a customer-service voice agent. Read the conversation and "
        "write the next thing the agent should say to the user: one or two short, friendly "
        "spoken sentences, plain text only."
    )
    #: Said by the agent while the supervisor thinks; empty for none.
    filler: str = ""
    timeout_s: float = Field(default=20.0, gt=0, le=120)
    max_tokens: int = Field(default=120, ge=8, le=2000)


class Moderation(_Strict):
    """An OpenAI-compatible ``/moderations`` endpoint (``omni-moderation-latest`` on OpenAI)."""

    base_url: str = Field(pattern=r"^https?://")
    model: str = "omni-moderation-latest"
    api_key_env: str | None = None
    timeout_s: float = Field(default=5.0, gt=0, le=60)


class Guardrails(_Strict):
    #: Words or phrases the assistant must not say (case-insensitive, whole words).
    words: list[str] = Field(default_factory=list)
    moderation: Moderation | None = None
    #: The note the agent gets after a trip, before it tries again ({rule} is filled in).
    correction: str = (
        "Your last reply was stopped because it broke a rule ({rule}). Do not repeat it. "
        "Briefly apologise and answer again without it."
    )
    #: Trips in a row before the agent is left to answer without another check.
    max_retries: int = Field(default=2, ge=0, le=5)


class Scenario(_Strict):
    name: str
    title: str = ""
    description: str = ""
    start: str | None = None  # the first agent; default the first listed
    agents: list[Agent] = Field(min_length=1, max_length=16)
    supervisor: Supervisor = Field(default_factory=Supervisor)
    guardrails: Guardrails | None = None
    _source: str = PrivateAttr(default="")  # the file it came from, for later error messages

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value, "scenario name")

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        names = [a.name for a in self.agents]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ValueError(f"agents: the name {dup!r} is used twice")
        known = ", ".join(names)
        if self.start is not None and self.start not in names:
            raise ValueError(f"start: unknown agent {self.start!r} (agents: {known})")
        for i, agent in enumerate(self.agents):
            for j, h in enumerate(agent.handoffs):
                if h.agent not in names:
                    raise ValueError(
                        f"agents[{i}].handoffs[{j}].agent: unknown agent {h.agent!r} (agents: {known})"
                    )
                if h.agent == agent.name:
                    raise ValueError(f"agents[{i}].handoffs[{j}].agent: {agent.name!r} hands off to itself")
            own = [t.name for t in agent.client_tools] + list(agent.tools)
            reserved = [n for n in own if n.startswith(TRANSFER_PREFIX) or n == SUPERVISOR_TOOL]
            if reserved:
                raise ValueError(f"agents[{i}]: the tool name {reserved[0]!r} is reserved for scenarios")
        return self

    @property
    def first(self) -> Agent:
        return self.agent(self.start) if self.start else self.agents[0]

    def agent(self, name: str) -> Agent:
        for agent in self.agents:
            if agent.name == name:
                return agent
        raise KeyError(name)

    @property
    def source(self) -> str:
        return self._source or self.name

    def check_tools(self, server_tools: set[str]) -> None:
        """Every named server tool must exist where the scenario runs."""
        for i, agent in enumerate(self.agents):
            for j, tool in enumerate(agent.tools):
                if tool not in server_tools:
                    raise ScenarioError(
                        f"{self.source}: agents[{i}].tools[{j}]: unknown server tool {tool!r} "
                        f"(this server has: {', '.join(sorted(server_tools)) or 'none'})"
                    )

    def summary(self) -> dict[str, Any]:
        """What a page needs to show the scenario (no instructions, no URLs)."""
        return {
            "name": self.name,
            "title": self.title or self.name.replace("_", " ").capitalize(),
            "description": self.description,
            "start": self.first.name,
            "agents": [
                {
                    "name": a.name,
                    "title": a.title or a.name.replace("_", " ").capitalize(),
                    "voice": a.voice,
                    "handoffs": [h.agent for h in a.handoffs],
                    "supervisor": a.supervisor,
                }
                for a in self.agents
            ],
            "guardrails": self.guardrails is not None,
        }


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse(data: Any, source: str) -> Scenario:
    """A scenario from already-parsed YAML/JSON, or :class:`ScenarioError` naming ``source``."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario is a mapping with 'name' and 'agents'")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        # Cross-field checks (handoff targets, start) name their own field in the message.
        where = f"{_where(tuple(first['loc']))}: " if first["loc"] else ""
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ScenarioError(f"{source}: {where}{message}{more}") from None
    scenario._source = source
    return scenario


def parse_text(text: str, source: str) -> Scenario:
    if len(text.encode()) > MAX_FILE_BYTES:
        raise ScenarioError(f"{source}: larger than {MAX_FILE_BYTES // 1024} KiB")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError(f"{source}: not valid YAML{at}: {problem}") from None
    return parse(data, source)


def load_file(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from None
    return parse_text(text, str(path))


def builtin() -> dict[str, Scenario]:
    """The scenarios shipped in this package, by name."""
    found: dict[str, Scenario] = {}
    folder = resources.files("parley") / "scenarios"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith((".yaml", ".yml")):
            scenario = parse_text(entry.read_text(encoding="utf-8"), f"parley/scenarios/{entry.name}")
            found[scenario.name] = scenario
    return found


def resolve(spec: str) -> Scenario:
    """A scenario by file path, or by the name of a shipped one."""
    path = Path(spec)
    if path.suffix in (".yaml", ".yml", ".json") or path.exists():
        return load_file(path)
    shipped = builtin()
    if spec in shipped:
        return shipped[spec]
    raise ScenarioError(
        f"no scenario file or shipped scenario named {spec!r} (shipped: {', '.join(shipped)})"
    )
