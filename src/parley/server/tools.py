"""Server-side tools: a small registry of Python functions, and the protocol driver that runs them.

The model calls a server tool like any function tool; the page sees the call
events as usual. The server (the WebSocket relay, or a sideband socket for a
WebRTC call) answers it: on ``response.output_item.done`` for a completed
``function_call`` it runs the function, and once that response is done it
sends ``conversation.item.create {function_call_output}`` and, if the turn
finished normally, ``response.create`` so the model speaks the result.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import datetime as dt
import functools
import inspect
import itertools
import json
import logging
import math
import operator
import zoneinfo
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

EVENT_PREFIX = "parley_server_tool_"  # event ids of the server's own client events
TOOL_TIMEOUT_S = 10.0
MAX_NOTES, MAX_NOTE_CHARS = 100, 500
FILLER_TIMEOUT_S = 15.0
MAX_TOOL_ROUNDS = 3  # consecutive tool-call responses before the follow-up must answer in words


@dataclass
class ToolContext:
    """State one realtime session's tools share (e.g. the notes list)."""

    notes: list[str] = field(default_factory=list)


ToolFn = Callable[[dict[str, Any], ToolContext], Any]


class ToolError(Exception):
    """A tool's refusal, reported to the model as ``{"error": message}``."""


@dataclass
class ServerTool:
    name: str
    description: str
    parameters: dict[str, Any]
    fn: ToolFn
    timeout: float = TOOL_TIMEOUT_S
    #: Spoken (as an out-of-band response) while the call is still running once its turn ends.
    filler: str = ""
    #: Options for the ``response.create`` that follows the call's output (e.g. its ``input``).
    follow_up: Callable[[], dict[str, Any]] | None = None

    def definition(self) -> dict[str, Any]:
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
        }


class ToolRegistry:
    def __init__(self, tools: list[ServerTool] | None = None) -> None:
        self.tools: dict[str, ServerTool] = {t.name: t for t in tools or []}

    def __bool__(self) -> bool:
        return bool(self.tools)

    def __contains__(self, name: object) -> bool:
        return name in self.tools

    def definitions(self) -> list[dict[str, Any]]:
        return [t.definition() for t in self.tools.values()]

    def describe(self) -> list[dict[str, str]]:
        return [{"name": t.name, "description": t.description} for t in self.tools.values()]

    def merge(self, tools: Any) -> list[Any]:
        """The page's tools plus ours; a page tool with a server tool's name is replaced by ours."""
        page = (
            [t for t in tools if not (isinstance(t, dict) and t.get("name") in self.tools)]
            if isinstance(tools, list)
            else []
        )
        return [*page, *self.definitions()]

    def missing_from(self, tools: Any) -> bool:
        names = {t.get("name") for t in tools if isinstance(t, dict)} if isinstance(tools, list) else set()
        return not {t.get("name") for t in self.definitions()} <= names

    def drift(self, session: dict[str, Any]) -> dict[str, Any] | None:
        """The ``session.update`` fields that put back what the server owns in ``session`` (a
        ``session.updated`` seen by a sideband), or None when nothing is missing."""
        tools = session.get("tools")
        return {"tools": self.merge(tools)} if self.missing_from(tools) else None

    def rewrite(self, session: dict[str, Any]) -> dict[str, Any]:
        """A client's ``session.update`` on its way up: the server tools stay in ``tools``."""
        if isinstance(session.get("tools"), list):
            session["tools"] = self.merge(session["tools"])
        return session

    async def run(self, name: str, arguments: str, ctx: ToolContext) -> str:
        """The tool's result as the JSON string sent back as ``function_call_output``."""
        tool = self.tools[name]
        try:
            args = json.loads(arguments) if arguments.strip() else {}
            if not isinstance(args, dict):
                raise ToolError("arguments must be a JSON object")
            result = tool.fn(args, ctx)
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, tool.timeout)
        except (ToolError, ValueError, TypeError, ArithmeticError, zoneinfo.ZoneInfoNotFoundError) as exc:
            result = {"error": str(exc) or type(exc).__name__}
        except TimeoutError:
            result = {"error": f"the tool took longer than {tool.timeout:.0f} s"}
        except Exception as exc:
            log.exception("server tool %s failed", name)
            result = {"error": f"internal error in {name}: {type(exc).__name__}"}
        return json.dumps(result, ensure_ascii=False, default=str)


# --- the built-in tools -------------------------------------------------------


def current_time(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    asked = str(args.get("timezone") or "UTC").strip()
    name = resolve_zone(asked)
    now = dt.datetime.now(zoneinfo.ZoneInfo(name))
    return {
        "place": asked,
        "timezone": name,
        "time": now.strftime("%H:%M"),
        "date": now.strftime("%Y-%m-%d"),
        "weekday": now.strftime("%A"),
        "iso": now.isoformat(timespec="seconds"),
    }


def resolve_zone(place: str) -> str:
    """An IANA time zone for ``place``: a zone name as it is, or a city that names one.

    A small local model copies the schema's example instead of naming the zone: Qwen2.5-0.5B
    passed "Australia/Paris" for Sydney and "Europe/Paris" for Berlin when the example was
    'Europe/Paris'. Asked for the place as the user said it, it passes "Sydney", "Berlin",
    "New York", which the zone database names (Australia/Sydney, Europe/Berlin,
    America/New_York).
    """
    with contextlib.suppress(zoneinfo.ZoneInfoNotFoundError, ValueError):
        zoneinfo.ZoneInfo(place)
        return place
    city = "_".join(place.replace(",", " ").split()).lower()
    found = sorted(z for z in _zones() if z.rsplit("/", 1)[-1].lower() == city)
    if found:
        return found[0]
    raise ToolError(
        f"unknown place {place!r}; give a city such as 'Tokyo' or an IANA time zone such as 'Europe/Paris'"
    )


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCS: dict[str, Callable[..., float]] = {"sqrt": math.sqrt, "abs": abs, "round": round}


def _evaluate(node: ast.AST) -> float:
    # A whitelist walk: no names, attributes or calls beyond _FUNCS, so nothing but arithmetic runs.
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > 100 or abs(left) > 1e6):
            raise ToolError("exponent too large")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCS
        and not node.keywords
        and 1 <= len(node.args) <= 2
    ):
        return _FUNCS[node.func.id](*(_evaluate(a) for a in node.args))
    raise ToolError("only numbers, + - * / // % ** ( ) and sqrt/abs/round are allowed")


def calculate(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    expression = str(args.get("expression") or "").replace("^", "**").replace("×", "*").replace("÷", "/")
    if not expression.strip() or len(expression) > 200:
        raise ToolError("give an arithmetic expression of at most 200 characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ToolError(f"cannot parse {expression!r} as arithmetic") from None
    value = _evaluate(tree)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    elif isinstance(value, float):
        value = round(value, 10)
    return {"expression": expression, "result": value}


def add_note(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    text = str(args.get("text") or "").strip()
    if not text:
        raise ToolError("the note is empty")
    if len(ctx.notes) >= MAX_NOTES:
        raise ToolError(f"the notes list is full ({MAX_NOTES} notes)")
    ctx.notes.append(text[:MAX_NOTE_CHARS])
    return {"added": ctx.notes[-1], "count": len(ctx.notes)}


def list_notes(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    return {"notes": list(ctx.notes), "count": len(ctx.notes)}


def clear_notes(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    count = len(ctx.notes)
    ctx.notes.clear()
    return {"cleared": count}


_NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}, "required": []}


def default_registry() -> ToolRegistry:
    return ToolRegistry(
        [
            ServerTool(
                "get_current_time",
                "Get the current local time and date in a time zone.",
                {
                    "type": "object",
                    "properties": {
                        "timezone": {
                            "type": "string",
                            "description": "the city or place asked about, as the user said it (or an IANA time zone such as UTC)",
                        }
                    },
                    "required": ["timezone"],
                },
                current_time,
            ),
            ServerTool(
                "calculate",
                "Evaluate an arithmetic expression exactly, e.g. '12.5 * (3 + 4)'.",
                {
                    "type": "object",
                    "properties": {
                        "expression": {
                            "type": "string",
                            "description": "numbers with + - * / ** and parentheses",
                        }
                    },
                    "required": ["expression"],
                },
                calculate,
            ),
            ServerTool(
                "add_note",
                "Save a short note for later in this conversation.",
                {
                    "type": "object",
                    "properties": {"text": {"type": "string", "description": "the note"}},
                    "required": ["text"],
                },
                add_note,
            ),
            ServerTool(
                "list_notes", "List the notes saved so far in this conversation.", _NO_ARGS, list_notes
            ),
            ServerTool("clear_notes", "Delete all notes saved in this conversation.", _NO_ARGS, clear_notes),
        ]
    )


# --- the protocol driver ----------------------------------------------------------

# Server events the runner acts on; others pass without being parsed. Base64 audio
# cannot contain '"' so these markers never match inside an audio delta.
_TYPES = frozenset(
    {"response.output_item.done", "response.done", "error", "session.updated", "session.created"}
)
_MARKERS = tuple(f'"{kind}"' for kind in _TYPES)
_TYPE_FIRST = '{"type":"'


@dataclass
class _PendingResponse:
    calls: list[tuple[str, asyncio.Task[str]]] = field(default_factory=list)  # (call_id, result)
    names: list[str] = field(default_factory=list)  # the tool of each call
    done: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class ToolRunner:
    """Answers server-tool calls seen in one session's server events.

    ``send`` delivers a client event (JSON text) to the upstream session.
    ``ensure_tools``: when a ``session.updated`` lacks the server tools (a
    WebRTC page replaced the tools), add them back; the WebSocket relay
    instead rewrites the page's ``session.update`` on its way up.
    """

    def __init__(
        self,
        registry: ToolRegistry,
        send: Callable[[str], Awaitable[None]],
        *,
        ensure_tools: bool = False,
        ctx: ToolContext | None = None,
    ) -> None:
        self.registry = registry
        self.send = send
        self.ensure_tools = ensure_tools
        self.ctx = ctx or ToolContext()
        self._pending: dict[str, _PendingResponse] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ids = itertools.count(1)
        self._tool_restores = 0
        self._forced_choice = False  # the session's tool_choice is "required" or one function
        self._rounds = 0  # consecutive responses that ended in server-tool calls
        self._filler: asyncio.Future[None] | None = None  # the filler response being spoken
        self.calls_run = 0

    @staticmethod
    def interesting(text: str) -> bool:
        # Realtime servers write "type" first: read it there instead of scanning kilobytes of audio
        # delta five times (~2 µs per event on the relay's hot path). Any other layout is scanned.
        if text.startswith(_TYPE_FIRST):
            end = text.find('"', len(_TYPE_FIRST))
            if end > 0:
                return text[len(_TYPE_FIRST) : end] in _TYPES
        return any(m in text for m in _MARKERS)

    def observe(self, event: dict[str, Any]) -> bool:
        """Act on one server event; False if the page must not see it (our own events' errors)."""
        kind = event.get("type")
        if kind == "response.output_item.done":
            item = event.get("item") or {}
            if (
                item.get("type") == "function_call"
                and item.get("status") == "completed"
                and item.get("name") in self.registry
            ):
                self._start_call(str(event.get("response_id")), item)
        elif kind == "response.done":
            response = event.get("response") or {}
            if (response.get("metadata") or {}).get("parley") == "filler":
                if self._filler is not None and not self._filler.done():
                    self._filler.set_result(None)
                return True
            pending = self._pending.get(str(response.get("id")))
            if pending is None:
                self._rounds = 0
            elif not pending.done.done():
                pending.done.set_result(str(response.get("status")))
        elif kind == "error":
            error = event.get("error") or {}
            if str(error.get("event_id") or "").startswith(EVENT_PREFIX):
                log.warning("upstream refused a server-tool event: %s", error.get("message"))
                return False
        elif kind in ("session.updated", "session.created"):
            session = event.get("session") or {}
            self._forced_choice = session.get("tool_choice", "auto") not in ("auto", "none")
            restore = self.registry.drift(session) if self.ensure_tools else None
            if restore and self._tool_restores < 5:
                self._tool_restores += 1
                self._spawn(
                    self._send({"type": "session.update", "session": {"type": "realtime", **restore}})
                )
        return True

    def _start_call(self, response_id: str, item: dict[str, Any]) -> None:
        pending = self._pending.get(response_id)
        if pending is None:
            pending = self._pending[response_id] = _PendingResponse()
            self._spawn(self._answer(response_id, pending))
        task = asyncio.create_task(
            self.registry.run(item["name"], str(item.get("arguments") or ""), self.ctx)
        )
        pending.calls.append((str(item.get("call_id")), task))
        pending.names.append(str(item["name"]))
        self.calls_run += 1

    async def _answer(self, response_id: str, pending: _PendingResponse) -> None:
        try:
            # Outputs only after response.done: a response.create while the call's
            # response is still active would be refused.
            status = await pending.done
            if status == "completed":
                await self._fill(pending)
            for call_id, task in pending.calls:
                output = await task
                await self._send(
                    {
                        "type": "conversation.item.create",
                        "item": {"type": "function_call_output", "call_id": call_id, "output": output},
                    }
                )
            # A cancelled turn (barge-in) gets its outputs but no new response: the user spoke.
            if status == "completed":
                self._rounds += 1
                follow_up = self._follow_up()
                for name in pending.names:
                    tool = self.registry.tools.get(name)
                    if tool is not None and tool.follow_up is not None:
                        options = tool.follow_up()
                        follow_up["response"] = {**follow_up.get("response", {}), **options}
                await self._send({"type": "response.create", **follow_up})
        finally:
            self._pending.pop(response_id, None)
            for _, task in pending.calls:
                task.cancel()

    async def _fill(self, pending: _PendingResponse) -> None:
        """While a slow call (the supervisor) still runs, say its filler, out of band (so it stays
        out of the conversation) and wait for it to end before the call's output is spoken."""
        fillers = [
            self.registry.tools[name].filler
            for name, (_, task) in zip(pending.names, pending.calls, strict=True)
            if not task.done() and name in self.registry.tools and self.registry.tools[name].filler
        ]
        if not fillers:
            return
        self._filler = asyncio.get_running_loop().create_future()
        await self._send(
            {
                "type": "response.create",
                "response": {
                    "conversation": "none",
                    "input": [],
                    "instructions": f"Say exactly this sentence and nothing else: {fillers[0]}",
                    "tool_choice": "none",
                    "metadata": {"parley": "filler"},
                },
            }
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._filler, FILLER_TIMEOUT_S)
        self._filler = None

    def _follow_up(self) -> dict[str, Any]:
        """Response options after a tool round, so a forced tool choice cannot loop forever.

        Like the agents SDKs' ``reset_tool_choice``: a forced choice is satisfied
        by the call, so the follow-up may speak (``auto``); after
        ``MAX_TOOL_ROUNDS`` rounds in a row it must (``none``).
        """
        if self._rounds >= MAX_TOOL_ROUNDS:
            return {"response": {"tool_choice": "none"}}
        if self._forced_choice:
            return {"response": {"tool_choice": "auto"}}
        return {}

    async def _send(self, event: dict[str, Any]) -> None:
        event = {**event, "event_id": f"{EVENT_PREFIX}{next(self._ids)}"}
        await self.send(json.dumps(event, separators=(",", ":")))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.debug("server tool task ended: %r", exc)

    async def close(self) -> None:
        tasks = [*self._tasks, *(t for p in self._pending.values() for _, t in p.calls)]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._pending.clear()
