"""``parley talk``: voice chat in the terminal over WebSocket or WebRTC.

Talks to OpenAI (``--openai``, key from ``OPENAI_API_KEY``), to a local
``parley engine`` (the default, ``http://127.0.0.1:8765/v1``) or through
``parley serve`` (``--url http://host:port/v1``). With no sound card, or for
scripts and tests, ``--input-wav``/``--output-wav`` turn files into a
microphone and a speaker that run in real time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from parley.protocol.session_config import VOICES

DEFAULT_URL = "http://127.0.0.1:8765/v1"
OPENAI_URL = "https://api.openai.com/v1"


def configure(parser: argparse.ArgumentParser) -> None:
    srv = parser.add_argument_group("server")
    srv.add_argument(
        "--url",
        default=None,
        help=f"server base URL (default $PARLEY_URL or {DEFAULT_URL}; a `parley serve` relay: "
        "http://HOST:PORT/v1)",
    )
    srv.add_argument(
        "--openai", action="store_true", help=f"talk to OpenAI ({OPENAI_URL}, key $OPENAI_API_KEY)"
    )
    srv.add_argument(
        "--serve",
        default=None,
        metavar="URL",
        help="go through a `parley serve` web app, e.g. http://127.0.0.1:8000 (its relays; "
        "WebRTC calls get an ek_ secret from its /api/session)",
    )
    srv.add_argument(
        "--scenario",
        default=None,
        metavar="NAME|FILE",
        help="run an agent scenario (handoffs, supervisor, guardrails) on the `parley serve` server "
        "(--serve): a name it offers (assistant, customer_service, chat_supervisor) or a scenario file",
    )
    srv.add_argument(
        "--access-token",
        default=None,
        help="the `parley serve` access token, if it requires one (env PARLEY_ACCESS_TOKEN)",
    )
    srv.add_argument(
        "--api-key",
        default=None,
        help="API key (default $OPENAI_API_KEY with --openai, else $PARLEY_API_KEY or 'local')",
    )
    srv.add_argument("--model", default="gpt-realtime", help="model name (default gpt-realtime)")
    srv.add_argument("--transport", choices=["websocket", "webrtc"], default="websocket")
    srv.add_argument(
        "--no-reconnect", action="store_true", help="exit instead of reconnecting when the line drops"
    )

    ses = parser.add_argument_group("session")
    ses.add_argument("--voice", default=None, help=f"assistant voice ({', '.join(VOICES)})")
    ses.add_argument("--instructions", default=None, help="system instructions for the assistant")
    ses.add_argument(
        "--turn-detection",
        choices=["server_vad", "semantic_vad", "none"],
        default=None,
        help="who decides when you finished speaking (none = push-to-talk); default semantic_vad "
        "(it waits through pauses inside a sentence: see `parley bench turn-taking`), "
        "server_vad when --silence-ms is given",
    )
    ses.add_argument(
        "--eagerness",
        choices=["low", "medium", "high", "auto"],
        default="low",
        help="semantic_vad: how soon a turn counts as finished (default low: the setting that did not "
        "cut in on pauses inside a sentence in `parley bench turn-taking`)",
    )
    ses.add_argument("--push-to-talk", action="store_true", help="manual turns: Space starts/stops talking")
    ses.add_argument("--silence-ms", type=int, default=None, help="server_vad silence before a turn ends")
    ses.add_argument(
        "--no-transcription", action="store_true", help="do not ask for transcripts of your speech"
    )

    aud = parser.add_argument_group("audio")
    aud.add_argument("--list-devices", action="store_true", help="list sound devices and exit")
    aud.add_argument("--input-device", default=None, help="microphone (index or name; see --list-devices)")
    aud.add_argument("--output-device", default=None, help="speaker (index or name)")
    aud.add_argument(
        "--input-wav",
        type=Path,
        default=None,
        help="use a WAV file as the microphone (played in real time, then silence)",
    )
    aud.add_argument(
        "--output-wav",
        type=Path,
        default=None,
        help="use a WAV file as the speaker (written in real time, silence included)",
    )
    aud.add_argument(
        "--echo-sim",
        type=float,
        default=0.0,
        metavar="GAIN",
        help="file devices: feed GAIN × the speaker back into the mic (tests echo handling)",
    )
    aud.add_argument(
        "--aec",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="echo cancellation (default: on with a sound card, off with files)",
    )
    aud.add_argument("--half-duplex", action="store_true", help="mute the mic while the assistant speaks")
    aud.add_argument(
        "--local-vad",
        action="store_true",
        help="stop playback as soon as you start speaking, before the server reacts",
    )

    rec = parser.add_argument_group("recording")
    rec.add_argument(
        "--record",
        type=Path,
        default=None,
        metavar="DIR",
        help="save the session: events.jsonl, mic.wav, speaker.wav",
    )
    rec.add_argument(
        "--replay", type=Path, default=None, metavar="DIR", help="replay a recorded session and exit"
    )

    ui = parser.add_argument_group("interface")
    ui.add_argument("--plain", action="store_true", help="line output instead of the full-screen display")
    ui.add_argument(
        "--say", action="append", default=[], metavar="TEXT", help="send a typed message at start"
    )
    ui.add_argument("--duration", type=float, default=None, help="hang up after this many seconds")
    ui.add_argument(
        "--exit-when-done",
        action="store_true",
        help="with --input-wav: hang up once the file has been said and the assistant has answered",
    )


def _scenario_id(serve: str, spec: str, headers: dict[str, str]) -> str:
    """A scenario name the server offers, or a local file sent to it (``POST /api/scenarios``)."""
    from pathlib import Path

    import httpx

    from parley.scenarios import ScenarioError, load_file

    path = Path(spec)
    if not (path.suffix in (".yaml", ".yml", ".json") or path.exists()):
        return spec  # a name: the server says if it does not know it
    try:
        load_file(path)  # the same checks here, with the file's own name in the message
    except ScenarioError as exc:
        raise SystemExit(f"parley talk: {exc}") from None
    try:
        r = httpx.post(f"{serve}/api/scenarios", content=path.read_bytes(), headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        raise SystemExit(f"parley talk: cannot reach {serve}: {exc}") from None
    if r.status_code != 200:
        raise SystemExit(f"parley talk: the server refused {path}: {r.text}")
    return str(r.json()["id"])


def _resolve_target(args: argparse.Namespace) -> tuple[str, str, dict]:
    if args.scenario and not args.serve:
        raise SystemExit(
            "parley talk: --scenario runs on a `parley serve` server; add --serve URL "
            "(e.g. --serve http://127.0.0.1:8000)"
        )
    if args.serve:
        serve = args.serve.rstrip("/")
        token = args.access_token or os.environ.get("PARLEY_ACCESS_TOKEN")
        headers = {"x-parley-access-token": token} if token else {}
        scenario = _scenario_id(serve, args.scenario, headers) if args.scenario else None
        if args.transport == "webrtc":
            return (
                serve + "/api",
                "minted",
                {
                    "calls_url": serve + "/api/realtime/calls",
                    "mint_url": serve + "/api/session",
                    "headers": headers,
                    "mint_body": {"scenario": scenario} if scenario else {},
                },
            )
        # The relay holds the upstream key; it only needs its own access token.
        return (
            serve + "/api/v1",
            "relay",
            {"headers": headers, "query": {"scenario": scenario} if scenario else {}},
        )
    url, key = _resolve_direct(args)
    return url, key, {}


def _resolve_direct(args: argparse.Namespace) -> tuple[str, str]:
    if args.openai:
        key = args.api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            raise SystemExit("parley talk --openai needs an API key: set OPENAI_API_KEY or pass --api-key.")
        return args.url or OPENAI_URL, key
    url = args.url or os.environ.get("PARLEY_URL") or DEFAULT_URL
    return url, args.api_key or os.environ.get("PARLEY_API_KEY") or "local"


def _make_audio(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from parley.client.devices import FileAudio, SoundDeviceAudio

    if args.input_wav or args.output_wav:
        if args.input_wav and not args.input_wav.exists():
            raise SystemExit(f"--input-wav {args.input_wav}: no such file")
        return FileAudio(args.input_wav, args.output_wav, echo_gain=args.echo_sim)
    return SoundDeviceAudio(_dev(args.input_device), _dev(args.output_device))


def _dev(value: str | None) -> int | str | None:
    return int(value) if value is not None and value.isdigit() else value


def run(args: argparse.Namespace) -> int:
    from parley.client.devices import NoAudioDeviceError, list_devices

    if args.list_devices:
        try:
            print(list_devices())
        except NoAudioDeviceError as exc:
            print(exc, file=sys.stderr)
            return 2
        return 0
    if args.replay:
        return asyncio.run(_replay(args))
    try:
        audio = _make_audio(args)
    except NoAudioDeviceError as exc:
        print(f"parley talk: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_talk(args, audio))


async def _replay(args: argparse.Namespace) -> int:
    from rich.console import Console

    from parley.client.devices import FileAudio, NoAudioDeviceError, SoundDeviceAudio
    from parley.client.recorder import replay

    console = Console()
    audio: FileAudio | SoundDeviceAudio | None = None
    if args.output_wav:
        audio = FileAudio(None, args.output_wav)
    elif not args.plain:
        try:
            audio = SoundDeviceAudio(None, _dev(args.output_device), use_input=False)
        except NoAudioDeviceError as exc:
            console.print(f"[yellow]{exc}\nReplaying the transcript only.[/]")

    def show(t: float, who: str, text: str) -> None:
        style = {"user": "cyan", "user (typed)": "cyan", "assistant": "magenta"}.get(who, "dim")
        console.print(f"[dim]{t:7.2f}s[/] [{style}]{who}:[/] {text}")

    if not (args.replay / "events.jsonl").exists():
        console.print(f"[red]{args.replay} is not a recording (no events.jsonl)[/]")
        return 2
    await replay(args.replay, show=show, audio=audio)
    return 0


async def _talk(args: argparse.Namespace, audio) -> int:  # type: ignore[no-untyped-def]
    from rich.console import Console

    from parley.client.transport import TransportError
    from parley.client.tui import KeyReader, ViewModel

    url, key, transport_options = _resolve_target(args)
    conv = _conversation(args, audio, url, key, transport_options)
    console = Console()
    interactive = not args.plain and sys.stdout.isatty()
    vm = ViewModel(url=url, transport=args.transport, ptt=_push_to_talk(args), voice=args.voice)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def out(text: str) -> None:
        if not interactive:
            console.print(text, highlight=False, markup=False, soft_wrap=True)

    _show(conv, vm, out, stop)
    keyboard = _Keyboard(conv, vm, out, stop)
    keys = KeyReader(keyboard.editor.key) if sys.stdin.isatty() else None
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    code = 0
    screen = _Screen(console, vm) if interactive else None
    try:
        if screen is not None:
            screen.start()
        try:
            if not await _start(conv, stop):
                return 0
        except TransportError as exc:
            if screen is not None:
                screen.stop()
                screen = None
            console.print(f"[red]parley talk: {exc}[/]", highlight=False, soft_wrap=True)
            return 1
        if keys is not None:
            keys.start(loop)
        for text in args.say:
            await keyboard.command(text)
        await _run(args, conv, vm, audio, screen, stop)
        if conv.connection_status == "failed":
            code = 1
    finally:
        if keys is not None:
            keys.stop()
        # Close first (files complete), then restore the terminal.
        await conv.close()
        if screen is not None:
            screen.stop()
        keyboard.cancel_pending()
    return _report(args, console, vm, interactive, code)


def _push_to_talk(args: argparse.Namespace) -> bool:
    return args.push_to_talk or args.turn_detection == "none"


def _turn_detection(args: argparse.Namespace) -> str:
    if args.turn_detection is not None:
        return str(args.turn_detection)
    return "server_vad" if args.silence_ms is not None else "semantic_vad"


def _conversation(args: argparse.Namespace, audio, url: str, key: str, transport_options: dict):  # type: ignore[no-untyped-def]
    from parley.client.conversation import Conversation
    from parley.client.devices import FileAudio
    from parley.client.options import ClientOptions, SessionOptions
    from parley.client.recorder import Recorder

    session = SessionOptions(
        model=args.model,
        voice=args.voice,
        instructions=args.instructions,
        turn_detection=None if _push_to_talk(args) else _turn_detection(args),
        silence_duration_ms=args.silence_ms,
        eagerness=args.eagerness,
        transcription_model=None if args.no_transcription else "whisper-1",
    )
    files = isinstance(audio, FileAudio)
    options = ClientOptions(
        local_vad=args.local_vad,
        aec=(not files) if args.aec is None else args.aec,
        half_duplex=args.half_duplex,
        reconnect=not args.no_reconnect,
    )
    return Conversation(
        url,
        key,
        transport=args.transport,
        session=session,
        options=options,
        audio=audio,
        recorder=Recorder(args.record) if args.record else None,
        transport_options=transport_options,
    )


def _show(conv, vm, out: Callable[[str], None], stop: asyncio.Event) -> None:  # type: ignore[no-untyped-def]
    """Conversation → view: the full-screen view model, or lines with --plain."""

    def on_connection(ev: dict) -> None:
        vm.connection = ev["status"]
        note = ""
        if ev["status"] == "reconnecting":
            note = f"attempt {ev['attempt']}/{ev['max_attempts']} in {ev['delay']:.1f} s"
            vm.note(f"connection lost: {ev.get('message', '')}")
        elif ev["status"] == "connected" and ev.get("session", 1) > 1:
            vm.note("reconnected: new session, the server's memory of the conversation starts over")
        elif ev["status"] == "failed":
            vm.note(f"connection failed: {ev.get('message', '')}")
            stop.set()
        vm.connection_note = note
        out(
            f"[connection] {ev['status']}"
            + (f" ({note})" if note else "")
            + (
                f": {ev['message']}"
                if ev.get("message") and ev["status"] not in ("connected", "closed")
                else ""
            )
        )

    def on_state(ev: dict) -> None:
        vm.state = ev["state"]
        out(f"[state] {ev['state']}")

    def on_user_delta(ev: dict) -> None:
        vm.line_for("you", ev["item_id"]).text += ev["delta"]

    def on_user_done(ev: dict) -> None:
        line = vm.line_for("you", ev["item_id"])
        line.text, line.done = ev["text"], True
        out(f"you: {ev['text']}")

    def on_asst_delta(ev: dict) -> None:
        vm.line_for("assistant", ev["item_id"]).text += ev["delta"]

    def on_asst_done(ev: dict) -> None:
        line = vm.line_for("assistant", ev["item_id"])
        line.text, line.done = ev["text"], True
        out(f"assistant: {ev['text']}")

    def on_interrupted(intr) -> None:  # type: ignore[no-untyped-def]
        vm.interruptions += 1
        vm.line_for("assistant", intr.item_id).note = f"interrupted at {intr.audio_end_ms / 1000:.2f} s"
        out(
            f"[barge-in] stopped at {intr.audio_end_ms} ms of {intr.received_ms:.0f} ms received ({intr.trigger})"
        )

    def on_asst_truncated(ev: dict) -> None:
        vm.line_for("assistant", ev["item_id"]).text = ev["text"]
        out(f"assistant (as heard): {ev['text']}")

    def on_latency(ev: dict) -> None:
        vm.last_latency_ms = ev["ms"]
        out(f"[latency] {ev['ms']:.0f} ms")

    def on_error(ev: dict) -> None:
        vm.note(f"server error: {ev['message']}")
        out(f"[error] {ev.get('code')}: {ev['message']}")

    def on_level(db: float) -> None:
        vm.mic_db = db

    conv.on("connection", on_connection)
    conv.on("state", on_state)
    conv.on("user.transcript.delta", on_user_delta)
    conv.on("user.transcript.done", on_user_done)
    conv.on("assistant.transcript.delta", on_asst_delta)
    conv.on("assistant.transcript.done", on_asst_done)
    conv.on("interrupted", on_interrupted)
    conv.on("assistant.transcript.truncated", on_asst_truncated)
    conv.on("turn.latency", on_latency)
    conv.on("error", on_error)
    conv.on("mic.level", on_level)


class _Keyboard:
    """Keyboard → conversation: typed lines, slash commands, push-to-talk and Esc."""

    def __init__(self, conv, vm, out: Callable[[str], None], stop: asyncio.Event) -> None:  # type: ignore[no-untyped-def]
        from parley.client.tui import LineEditor

        self.conv, self.vm, self.out, self.stop = conv, vm, out, stop
        self._pending: set[asyncio.Future] = set()
        self.editor = LineEditor(
            vm,
            on_line=lambda line: self._spawn(self.command(line)),
            on_ptt=lambda: self._spawn(self._toggle_ptt()),
            on_escape=lambda: self._spawn(conv.interrupt()),
            on_eof=stop.set,
        )

    def _spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.ensure_future(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def cancel_pending(self) -> None:
        for task in self._pending:
            task.cancel()

    async def command(self, line: str) -> None:
        conv, vm = self.conv, self.vm
        if not line.startswith("/"):
            vm.lines.append(_typed_line(line))
            self.out(f"you (typed): {line}")
            await conv.send_text(line)
            return
        name, _, rest = line[1:].partition(" ")
        rest = rest.strip()
        if name in ("quit", "exit", "q"):
            self.stop.set()
        elif name == "mute":
            conv.mute(True)
            vm.muted = True
            vm.note("microphone muted (/unmute to undo)")
        elif name == "unmute":
            conv.mute(False)
            vm.muted = False
            vm.note("microphone on")
        elif name == "voice":
            if rest not in VOICES:
                vm.note(f"voices: {', '.join(VOICES)}")
                return
            await conv.update_session(voice=rest)
            vm.voice = rest
            vm.note(f"voice → {rest} (takes effect if the server allows it)")
        elif name == "instructions":
            await conv.update_session(instructions=rest)
            vm.note("instructions updated")
        elif name == "stop":
            await conv.interrupt()
        else:
            vm.note("commands: /mute /unmute /voice NAME /instructions TEXT /stop /quit")

    async def _toggle_ptt(self) -> None:
        await self.conv.push_to_talk(not self.conv.ptt_active)
        self.vm.ptt_active = self.conv.ptt_active


class _Screen:
    """The full-screen view (rich Live on the alternate screen)."""

    def __init__(self, console, vm) -> None:  # type: ignore[no-untyped-def]
        from rich.live import Live

        self.console, self.vm = console, vm
        self.live = Live(console=console, auto_refresh=False, screen=True, redirect_stderr=False)

    def start(self) -> None:
        self.live.start()
        self.refresh()

    def refresh(self) -> None:
        from parley.client.tui import render

        self.live.update(render(self.vm, self.console.height, self.console.width), refresh=True)

    def stop(self) -> None:
        self.live.stop()


async def _start(conv, stop: asyncio.Event) -> bool:  # type: ignore[no-untyped-def]
    """Connect; False if the user gave up first (Ctrl-C while connecting must not wait for a timeout)."""
    starting = asyncio.ensure_future(conv.start())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not starting.done():
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await starting
        return False
    starting.result()
    return True


async def _run(
    args: argparse.Namespace, conv, vm, audio, screen: _Screen | None, stop: asyncio.Event
) -> None:  # type: ignore[no-untyped-def]
    """Until the user quits, the connection ends, --duration passes or --exit-when-done is met."""
    from parley.client.devices import FileAudio

    started = time.monotonic()
    idle_since: float | None = None
    while not stop.is_set() and not conv.closed.is_set():
        if screen is not None:
            screen.refresh()
        vm.muted, vm.ptt_active = conv.muted, conv.ptt_active
        if args.duration is not None and time.monotonic() - started >= args.duration:
            break
        if args.exit_when_done and isinstance(audio, FileAudio) and audio.input_finished.is_set():
            idle = conv.state == "listening" and not conv.active_response and not conv.player.is_playing()
            idle_since = (idle_since or time.monotonic()) if idle else None
            if idle_since is not None and time.monotonic() - idle_since > 2.5:
                break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)


def _report(args: argparse.Namespace, console, vm, interactive: bool, code: int) -> int:  # type: ignore[no-untyped-def]
    """After the full-screen view: the last lines of the conversation, and what went wrong."""
    if interactive:
        for line in vm.lines[-40:]:
            console.print(
                f"{line.who}: {line.text}" + (f"  [{line.note}]" if line.note else ""),
                highlight=False,
                markup=False,
            )
    if vm.connection == "failed":
        console.print(f"[red]parley talk: {vm.status_message}[/]", highlight=False)
        code = 1
    if args.record:
        console.print(
            f"session saved to {args.record}/ (events.jsonl, mic.wav, speaker.wav)", highlight=False
        )
    return code


def _typed_line(text: str):  # type: ignore[no-untyped-def]
    from parley.client.tui import Line

    return Line("you", text, None, True, "typed")
