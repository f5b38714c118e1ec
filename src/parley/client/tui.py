"""Terminal display for ``parley talk`` (rich), and the keyboard.

The view is a pure function of :class:`ViewModel`, which conversation
callbacks update; rendering never touches the connection. Keys are read in
cbreak mode straight from the terminal so typing, push-to-talk and slash
commands work while audio runs.
"""

from __future__ import annotations

import contextlib
import os
import sys
import termios
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

STATE_STYLE = {
    "connecting": ("…", "yellow"),
    "reconnecting": ("↻", "yellow"),
    "listening": ("●", "green"),
    "thinking": ("◔", "cyan"),
    "speaking": ("▶", "magenta"),
    "closed": ("■", "red"),
}

HELP = (
    "type + Enter: send · Esc: stop the assistant · /mute /unmute /voice NAME /instructions TEXT /quit"
    " · Ctrl-C: quit"
)
PTT_HELP = " · Space (on an empty line): push-to-talk on/off"


@dataclass
class Line:
    who: str  # "you", "assistant", "system"
    text: str
    item_id: str | None = None
    done: bool = False
    note: str = ""


@dataclass
class ViewModel:
    url: str = ""
    transport: str = "websocket"
    connection: str = "connecting"
    connection_note: str = ""
    state: str = "connecting"
    mic_db: float = -120.0
    muted: bool = False
    ptt: bool = False
    ptt_active: bool = False
    last_latency_ms: float | None = None
    interruptions: int = 0
    voice: str | None = None
    lines: list[Line] = field(default_factory=list)
    input: str = ""
    status_message: str = ""
    status_time: float = 0.0

    def line_for(self, who: str, item_id: str | None) -> Line:
        for line in reversed(self.lines[-20:]):
            if line.item_id == item_id and line.who == who and item_id is not None:
                return line
        line = Line(who, "", item_id)
        self.lines.append(line)
        del self.lines[:-500]
        return line

    def note(self, text: str) -> None:
        self.status_message, self.status_time = text, time.monotonic()


def _meter(db: float, width: int = 12) -> Text:
    level = max(0.0, min(1.0, (db + 60.0) / 60.0))
    filled = round(level * width)
    style = "green" if db < -12 else "yellow" if db < -3 else "red"
    return Text("▮" * filled, style=style) + Text("▯" * (width - filled), style="dim")


def render(vm: ViewModel, height: int = 24, width: int = 100) -> Group:
    icon, color = STATE_STYLE.get(vm.state, ("?", "white"))
    status = Table.grid(padding=(0, 2))
    status.add_row(
        Text(f"{icon} {vm.state.upper()}", style=f"bold {color}"),
        Text("mic ") + _meter(vm.mic_db) + Text(f" {vm.mic_db:5.0f} dB" if vm.mic_db > -119 else "   -∞ dB"),
        Text(
            f"last turn {vm.last_latency_ms / 1000:.2f} s"
            if vm.last_latency_ms is not None
            else "last turn –"
        ),
        Text(
            ("MUTED " if vm.muted else "")
            + ("PTT:ON " if vm.ptt_active else "PTT " if vm.ptt else "")
            + (f"barge-ins {vm.interruptions}" if vm.interruptions else ""),
            style="bold red" if vm.muted else "",
        ),
    )
    conn_color = {"connected": "green", "reconnecting": "yellow", "connecting": "yellow"}.get(
        vm.connection, "red"
    )
    title = Text.assemble(
        ("parley talk", "bold"),
        f" · {vm.transport} · {vm.url} · ",
        (vm.connection + (f" ({vm.connection_note})" if vm.connection_note else ""), conn_color),
    )
    header = Panel(status, title=title, title_align="left", border_style=conn_color)

    body_rows = max(3, height - 8)
    rendered: list[Text] = []
    for line in vm.lines:
        style = {"you": "bold cyan", "assistant": "bold magenta", "system": "dim"}.get(line.who, "")
        t = Text.assemble((f"{line.who}: ", style), line.text or ("…" if not line.done else ""))
        if line.note:
            t.append(f"  [{line.note}]", style="italic yellow")
        rendered.append(t)
    # Show the newest lines that fit, counting wrapped rows.
    shown: list[Text] = []
    rows = 0
    for t in reversed(rendered):
        need = max(1, -(-len(t.plain) // max(20, width - 2)))
        if rows + need > body_rows:
            break
        shown.append(t)
        rows += need
    shown.reverse()
    body = Group(*shown) if shown else Text("(say something, or type a message)", style="dim")

    prompt = Text.assemble(("> ", "bold"), vm.input, ("▏", "blink"))
    help_text = HELP + (PTT_HELP if vm.ptt else "")
    footer_items: list[Text] = [prompt]
    if vm.status_message and time.monotonic() - vm.status_time < 8:
        footer_items.append(Text(vm.status_message, style="yellow"))
    footer_items.append(Text(help_text, style="dim"))
    return Group(header, body, Text(""), *footer_items)


class KeyReader:
    """Raw-ish keyboard input on the event loop (cbreak: keys arrive one by one, Ctrl-C still signals)."""

    def __init__(self, on_key: Callable[[str], None]) -> None:
        self.on_key = on_key
        self.fd = sys.stdin.fileno()
        self._saved: list[Any] | None = None

    def start(self, loop) -> None:  # type: ignore[no-untyped-def]
        if os.isatty(self.fd):
            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        loop.add_reader(self.fd, self._read)
        self._loop = loop

    def _read(self) -> None:
        try:
            data = os.read(self.fd, 1024).decode("utf-8", "ignore")
        except OSError:
            data = ""
        if not data:  # stdin closed (piped input ended)
            self._loop.remove_reader(self.fd)
            return
        i = 0
        while i < len(data):
            ch = data[i]
            if ch == "\x1b" and i + 1 < len(data) and data[i + 1] == "[":
                i += 3  # arrow keys etc.: ignored
                continue
            self.on_key(ch)
            i += 1

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self.fd)
        if self._saved is not None:
            with contextlib.suppress(Exception):
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None


class LineEditor:
    """Turns keys into actions: a typed line, push-to-talk toggles, Esc, Ctrl-D."""

    def __init__(
        self,
        vm: ViewModel,
        *,
        on_line: Callable[[str], None],
        on_ptt: Callable[[], None],
        on_escape: Callable[[], None],
        on_eof: Callable[[], None],
    ) -> None:
        self.vm = vm
        self.on_line, self.on_ptt, self.on_escape, self.on_eof = on_line, on_ptt, on_escape, on_eof

    def key(self, ch: str) -> None:
        vm = self.vm
        if ch in ("\r", "\n"):
            line, vm.input = vm.input.strip(), ""
            if line:
                self.on_line(line)
        elif ch in ("\x7f", "\b"):
            vm.input = vm.input[:-1]
        elif ch == "\x1b":
            if vm.input:
                vm.input = ""
            else:
                self.on_escape()
        elif ch == "\x04":
            self.on_eof()
        elif ch == "\x15":  # Ctrl-U
            vm.input = ""
        elif ch == " " and not vm.input and vm.ptt:
            self.on_ptt()
        elif ch.isprintable():
            vm.input += ch
