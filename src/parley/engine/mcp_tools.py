"""MCP tools (``tools: [{"type": "mcp", …}]``): connecting, listing and calling, with the ``mcp`` SDK.

Each configured server is listed once per configuration: an ``mcp_list_tools``
item goes into the conversation with ``mcp_list_tools.in_progress``, then
``.completed`` (the item now carries the tools) or ``.failed``. The listed
tools reach the model as ordinary function-like tools (the same grammar and
routing as function tools); a call to one becomes an ``mcp_call`` item that the
engine executes itself (see :class:`parley.engine.response.ResponseRunner`).

A server is reached over streamable HTTP, or over SSE when it only offers that
(the streamable attempt fails first). Every operation opens its own short
connection, bounded by a timeout, so an unreachable, slow or failing server
fails that listing or that call, never the session; a result larger than
:data:`MAX_OUTPUT_CHARS` fails the call instead of flooding the model's context.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from parley.protocol import ids

log = logging.getLogger(__name__)

LIST_TIMEOUT_S = 10.0
CALL_TIMEOUT_S = 30.0
MAX_OUTPUT_CHARS = 64 * 1024

_T = TypeVar("_T")


class McpError(Exception):
    """A failed MCP operation, with the GA error object for the ``mcp_call`` item."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", ""))
        self.error = error


def _execution_error(message: str) -> McpError:
    return McpError({"type": "tool_execution_error", "message": message})


@dataclass(frozen=True)
class McpServer:
    """One ``type: "mcp"`` tool entry of the session (already checked)."""

    label: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    allowed_tools: tuple[str, ...] | None = None  # None: every tool
    read_only_only: bool = False
    approval: Any = "always"  # "always" | "never" | {"always": {...}, "never": {...}}

    @classmethod
    def from_wire(cls, tool: dict[str, Any]) -> McpServer:
        headers = dict(tool.get("headers") or {})
        if tool.get("authorization"):
            headers.setdefault("Authorization", f"Bearer {tool['authorization']}")
        allowed = tool.get("allowed_tools")
        names: tuple[str, ...] | None = None
        read_only = False
        if isinstance(allowed, list):
            names = tuple(allowed)
        elif isinstance(allowed, dict):
            if allowed.get("tool_names") is not None:
                names = tuple(allowed["tool_names"])
            read_only = bool(allowed.get("read_only"))
        approval = tool.get("require_approval")
        return cls(
            label=tool["server_label"],
            url=tool["server_url"],
            headers=tuple(sorted(headers.items())),
            allowed_tools=names,
            read_only_only=read_only,
            approval="always" if approval is None else _freeze(approval),
        )

    def allows(self, tool: dict[str, Any]) -> bool:
        if self.allowed_tools is not None and tool["name"] not in self.allowed_tools:
            return False
        return not self.read_only_only or _read_only(tool)

    def needs_approval(self, tool: dict[str, Any]) -> bool:
        approval = _thaw(self.approval)
        if approval in ("always", "never"):
            return approval == "always"
        if isinstance(approval, dict):
            for verdict in ("never", "always"):
                rule = approval.get(verdict)
                if isinstance(rule, dict) and _matches(rule, tool):
                    return verdict == "always"
        return True  # a filter that matches nothing: the GA default, ask


def _freeze(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict) else value


def _thaw(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) and value.startswith("{") else value


def _read_only(tool: dict[str, Any]) -> bool:
    annotations = tool.get("annotations")
    return isinstance(annotations, dict) and bool(annotations.get("readOnlyHint"))


def _matches(rule: dict[str, Any], tool: dict[str, Any]) -> bool:
    names = rule.get("tool_names")
    if names is not None and tool["name"] not in names:
        return False
    if rule.get("read_only") and not _read_only(tool):
        return False
    return names is not None or bool(rule.get("read_only"))


# --- the SDK -----------------------------------------------------------------------


async def _with_client(server: McpServer, timeout: float, op: Callable[[Any], Awaitable[_T]]) -> _T:
    """``op(client)`` on a connected ``mcp.Client``: streamable HTTP, else SSE.

    Only a failure to connect falls back to SSE; once connected, an error is the
    operation's (a call is never sent twice).
    """
    import httpx2
    from mcp import Client
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamable_http_client

    headers = dict(server.headers)
    connected = False
    try:
        async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
            async with Client(streamable_http_client(server.url, http_client=http)) as client:
                connected = True
                return await op(client)
    except Exception as exc:
        if connected:
            raise McpError(_connection_error(exc)) from exc
        streamable_error: BaseException = exc
    try:  # servers that only speak the older SSE transport
        async with Client(sse_client(server.url, headers=headers, timeout=timeout)) as client:
            connected = True
            return await op(client)
    except Exception as exc:
        raise McpError(_connection_error(exc if connected else streamable_error)) from exc


def _connection_error(exc: BaseException) -> dict[str, Any]:
    status = _http_status(exc)
    message = _describe(exc)
    if status is not None:
        return {"type": "http_error", "code": status, "message": message}
    return {"type": "protocol_error", "code": -32000, "message": message}


def _http_status(exc: BaseException) -> int | None:
    for e in _chain(exc):
        response = getattr(e, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            return status
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    stack = [exc]
    while stack and len(out) < 20:
        e = stack.pop()
        out.append(e)
        stack.extend(getattr(e, "exceptions", ()) or ())
        if e.__cause__ is not None:
            stack.append(e.__cause__)
        elif e.__context__ is not None:
            stack.append(e.__context__)
    return out


def _describe(exc: BaseException) -> str:
    leaves = [e for e in _chain(exc) if not getattr(e, "exceptions", None)]
    e = leaves[0] if leaves else exc
    return f"{e.__class__.__name__}: {e}" if str(e) else e.__class__.__name__


async def list_tools(server: McpServer, timeout: float | None = None) -> list[dict[str, Any]]:
    """The server's tools in the GA item shape (``name``, ``description``, ``input_schema``, …)."""
    timeout = LIST_TIMEOUT_S if timeout is None else timeout
    try:
        async with asyncio.timeout(timeout):
            result = await _with_client(server, timeout, lambda client: client.list_tools())
    except TimeoutError:
        raise McpError(
            {"type": "protocol_error", "code": -32001, "message": "Listing tools timed out."}
        ) from None
    tools = []
    for tool in result.tools:
        wire: dict[str, Any] = {
            "name": tool.name,
            "description": tool.description or "",
            "input_schema": dict(tool.input_schema or {"type": "object", "properties": {}}),
        }
        if tool.annotations is not None:
            wire["annotations"] = tool.annotations.model_dump(by_alias=True, exclude_none=True)
        tools.append(wire)
    return tools


async def call_tool(server: McpServer, name: str, arguments: str, timeout: float | None = None) -> str:
    """Run one tool; its text output, or :class:`McpError` with the GA error object."""
    timeout = CALL_TIMEOUT_S if timeout is None else timeout
    try:
        args = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        raise _execution_error(f"The arguments are not valid JSON: {arguments[:200]!r}") from None
    if not isinstance(args, dict):
        raise _execution_error("The arguments must be a JSON object.")
    try:
        async with asyncio.timeout(timeout):
            result = await _with_client(server, timeout, lambda client: client.call_tool(name, args))
    except TimeoutError:
        raise McpError(
            {"type": "protocol_error", "code": -32001, "message": f"The call timed out after {timeout:g} s."}
        ) from None
    texts = [getattr(part, "text", None) for part in result.content or []]
    output = "\n".join(t for t in texts if t)
    if not output and result.structured_content is not None:
        output = json.dumps(result.structured_content)
    if result.is_error:
        raise _execution_error(output or "The tool reported an error.")
    if len(output) > MAX_OUTPUT_CHARS:
        raise _execution_error(
            f"The tool returned {len(output)} characters, more than the {MAX_OUTPUT_CHARS} allowed."
        )
    return output


# --- per session -------------------------------------------------------------------


def _servers(tools: list[dict[str, Any]]) -> dict[str, McpServer]:
    return {t["server_label"]: McpServer.from_wire(t) for t in tools if t.get("type") == "mcp"}


@dataclass
class _Listing:
    server: McpServer
    item_id: str
    tools: list[dict[str, Any]] | None = None  # None until listed (or when listing failed)
    task: asyncio.Task[None] | None = None


@dataclass
class McpTools:
    """A session's MCP servers: listing on configuration, lookups for responses."""

    emit: Callable[[dict[str, Any]], None]
    add_item: Callable[[dict[str, Any]], None]  # a new item into the conversation (added event)
    done_item: Callable[[str, list[dict[str, Any]] | None], None]  # final: (id, listed tools)
    spawn: Callable[[Any], asyncio.Task[Any]]
    _listings: dict[str, _Listing] = field(default_factory=dict)

    def configure(self, tools: list[dict[str, Any]]) -> None:
        """The session's servers: list every one that is new or changed; forget removed ones."""
        wanted = _servers(tools)
        for label in [label for label in self._listings if label not in wanted]:
            self._forget(label)
        self.ensure(tools)

    def ensure(self, tools: list[dict[str, Any]]) -> None:
        """List the servers of ``tools`` that are not listed yet (or changed), keeping the others
        (a ``response.create`` may bring its own MCP servers)."""
        for label, server in _servers(tools).items():
            if label in self._listings and self._listings[label].server != server:
                self._forget(label)
            if label not in self._listings:
                listing = _Listing(server, ids.item_id())
                self._listings[label] = listing
                self.add_item(
                    {"id": listing.item_id, "type": "mcp_list_tools", "server_label": label, "tools": []}
                )
                self.emit({"type": "mcp_list_tools.in_progress", "item_id": listing.item_id})
                listing.task = self.spawn(self._list(listing))

    def _forget(self, label: str) -> None:
        listing = self._listings.pop(label)
        if listing.task is not None:
            listing.task.cancel()

    async def _list(self, listing: _Listing) -> None:
        try:
            tools = await list_tools(listing.server)
        except Exception as exc:  # McpError or anything else: that listing fails, never the session
            log.info("mcp %s: listing failed: %s", listing.server.label, exc)
            self.emit({"type": "mcp_list_tools.failed", "item_id": listing.item_id})
            self.done_item(listing.item_id, None)
            return
        listing.tools = tools
        self.emit({"type": "mcp_list_tools.completed", "item_id": listing.item_id})
        self.done_item(listing.item_id, [t for t in tools if listing.server.allows(t)])  # what the model gets

    async def ready(self, timeout: float | None = None) -> None:
        """Wait for listings still running (a response needs to know the tools)."""
        timeout = LIST_TIMEOUT_S if timeout is None else timeout
        tasks = [
            listing.task for listing in self._listings.values() if listing.task and not listing.task.done()
        ]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def tools(self, labels: set[str] | None = None) -> list[tuple[McpServer, dict[str, Any]]]:
        """(server, tool) for every listed, allowed tool; ``labels`` limits the servers."""
        out = []
        for label, listing in self._listings.items():
            if labels is not None and label not in labels:
                continue
            for tool in listing.tools or []:
                if listing.server.allows(tool):
                    out.append((listing.server, tool))
        return out

    def find(self, name: str, labels: set[str] | None = None) -> tuple[McpServer, dict[str, Any]] | None:
        return next(((s, t) for s, t in self.tools(labels) if t["name"] == name), None)

    def server(self, label: str) -> McpServer | None:
        listing = self._listings.get(label)
        return listing.server if listing else None

    def close(self) -> None:
        for listing in self._listings.values():
            if listing.task is not None:
                listing.task.cancel()
