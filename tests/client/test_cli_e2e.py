"""``parley talk`` as a program: files, recording/replay, the terminal UI in tmux, and the bad paths."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
import wave

import numpy as np
import pytest

from parley.bench.barge_in import engine_process, free_port, stop_process, wait_engine_ready
from parley.bench.speech import silence, synthesize, write_wav

pytestmark = [pytest.mark.models, pytest.mark.slow]

TALK = [sys.executable, "-m", "parley", "talk"]


@pytest.fixture(scope="module")
async def engine():
    async with engine_process() as (base, _proc):
        yield base


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("q") / "q.wav"
    # A second of lead-in: over WebRTC the first RTP packets can go out before the server listens.
    write_wav(
        path, np.concatenate([silence(1.0), synthesize("What is the capital of France?"), silence(0.3)])
    )
    return path


async def _run(args: list[str], limit: float = 120) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ, COLUMNS="200"),
    )
    out, err = await asyncio.wait_for(proc.communicate(), limit)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_files_record_and_replay(engine, question_wav, tmp_path):
    rec = tmp_path / "rec"
    code, out, err = await _run(
        [
            *TALK,
            "--plain",
            "--url",
            engine,
            "--input-wav",
            str(question_wav),
            "--output-wav",
            str(tmp_path / "a.wav"),
            "--record",
            str(rec),
            "--exit-when-done",
        ]
    )
    assert code == 0, err
    assert "you: What is the capital of France?" in out
    assert re.search(r"assistant: .*Paris", out), out
    assert "[state] speaking" in out and "[latency]" in out
    for name in ("mic.wav", "speaker.wav"):
        with wave.open(str(rec / name)) as w:
            assert w.getframerate() == 24000 and w.getnframes() > 24000
    # Replay: the transcript again, and both sides mixed into one file.
    code, out, err = await _run([*TALK, "--replay", str(rec), "--output-wav", str(tmp_path / "mix.wav")])
    assert code == 0, err
    assert "user: What is the capital of France?" in out and "assistant:" in out
    with wave.open(str(tmp_path / "mix.wav")) as w:
        mix = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert np.abs(mix).max() > 3000


def _tmux(*args: str) -> None:
    subprocess.run(["tmux", *args], check=True, capture_output=True)


def _pane(name: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", name], capture_output=True, text=True).stdout


async def _wait_pane(name: str, pattern: str, limit: float = 60) -> str:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        screen = _pane(name)
        if re.search(pattern, screen):
            return screen
        await asyncio.sleep(0.2)
    raise AssertionError(f"{pattern!r} not on screen:\n{_pane(name)}")


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
async def test_terminal_ui_in_tmux(engine, question_wav, tmp_path):
    name = f"parley-{uuid.uuid4().hex[:8]}"
    cmd = " ".join(
        [*TALK, "--url", engine, "--input-wav", str(question_wav), "--output-wav", str(tmp_path / "a.wav")]
    )
    _tmux("new-session", "-d", "-s", name, "-x", "130", "-y", "32", f"{cmd}; echo EXITED $?; sleep 30")
    try:
        screen = await _wait_pane(name, r"LISTENING|THINKING|SPEAKING")
        assert "parley talk" in screen and "websocket" in screen and "connected" in screen
        screen = await _wait_pane(name, r"you: What is the capital of France\?")
        screen = await _wait_pane(name, r"assistant: .*Paris")
        await _wait_pane(name, r"SPEAKING")
        # Typed message and slash commands.
        _tmux("send-keys", "-t", name, "/mute", "Enter")
        await _wait_pane(name, r"MUTED")
        _tmux("send-keys", "-t", name, "-l", "Who wrote Romeo and Juliet?")
        await _wait_pane(name, r"> Who wrote Romeo and Juliet\?")
        _tmux("send-keys", "-t", name, "Enter")
        await _wait_pane(name, r"you: Who wrote Romeo and Juliet\?\s+\[typed\]")
        await _wait_pane(name, r"assistant: .*(Shakespeare|William)")
        _tmux("send-keys", "-t", name, "/quit", "Enter")
        screen = await _wait_pane(name, r"EXITED 0")
        assert "What is the capital of France?" in screen  # transcript left on the terminal
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)  # noqa: ASYNC221


async def test_bad_key_and_dropped_connection(question_wav, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}/v1"
    async with engine_process(port, api_key="right-key"):
        code, out, err = await _run(
            [
                *TALK,
                "--plain",
                "--url",
                base,
                "--api-key",
                "wrong-key",
                "--output-wav",
                str(tmp_path / "x.wav"),
            ]
        )
        assert code == 1
        assert "rejected the API key" in out + err and "401" in out + err
        talk = await asyncio.create_subprocess_exec(
            *TALK,
            "--plain",
            "--url",
            base,
            "--api-key",
            "right-key",
            "--output-wav",
            str(tmp_path / "a.wav"),
            "--record",
            str(tmp_path / "rec"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(os.environ, COLUMNS="200"),
        )
        lines: list[str] = []

        async def pump() -> None:
            assert talk.stdout is not None
            async for raw in talk.stdout:
                lines.append(raw.decode())

        reader = asyncio.create_task(pump())

        async def seen(pattern: str, limit: float = 60) -> None:
            deadline = time.monotonic() + limit
            while not any(re.search(pattern, line) for line in lines):
                if time.monotonic() > deadline:
                    raise AssertionError(f"{pattern!r} not in output: {''.join(lines)}")
                await asyncio.sleep(0.1)

        await seen(r"\[connection\] connected")
    # The engine is gone: the client says so and keeps retrying with growing delays.
    await seen(r"\[connection\] reconnecting \(attempt 1/20 in 0\.5 s\)")
    await seen(r"\[connection\] reconnecting \(attempt 2/20 in 1\.0 s\)")
    proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; the engine restarts on the same port
        [sys.executable, "-m", "parley", "engine", "--port", str(port), "--api-key", "right-key"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        await wait_engine_ready(base, proc, "right-key", 180)
        # The client may reconnect before wait_engine_ready returns: count connections
        # since the start (one before the drop, one after), not from here.
        deadline = time.monotonic() + 60
        while sum("[connection] connected" in line for line in lines) < 2:
            assert time.monotonic() < deadline, "".join(lines)
            await asyncio.sleep(0.2)
        # Ctrl-C: clean shutdown, recording complete.
        talk.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(talk.wait(), 20)
        await reader
        assert code == 0, "".join(lines)
        with wave.open(str(tmp_path / "rec" / "speaker.wav")) as w:
            assert w.getnframes() > 0
        events = (tmp_path / "rec" / "events.jsonl").read_text().splitlines()
        assert sum('"session.updated"' in e for e in events) == 2  # configured again after reconnecting
    finally:
        stop_process(proc)


async def test_webrtc_turn_from_the_command_line(engine, question_wav, tmp_path):
    code, out, err = await _run(
        [
            *TALK,
            "--plain",
            "--transport",
            "webrtc",
            "--url",
            engine,
            "--input-wav",
            str(question_wav),
            "--output-wav",
            str(tmp_path / "a.wav"),
            "--exit-when-done",
        ]
    )
    assert code == 0, err
    assert re.search(r"you: What('s| is) the capital of France\?", out), out
    assert re.search(r"assistant: .*Paris", out), out


@pytest.mark.parametrize("transport", ["websocket", "webrtc"])
async def test_through_parley_serve(serve, question_wav, tmp_path, transport):
    code, out, err = await _run(
        [
            *TALK,
            "--plain",
            "--transport",
            transport,
            "--serve",
            serve,
            "--input-wav",
            str(question_wav),
            "--output-wav",
            str(tmp_path / "a.wav"),
            "--exit-when-done",
        ]
    )
    assert code == 0, out + err
    assert re.search(r"you: What('s| is) the capital of France\?", out), out
    assert re.search(r"assistant: .*Paris", out), out


@pytest.fixture(scope="module")
async def serve():
    import httpx

    port = free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; the app runs in its own process
        [sys.executable, "-m", "parley", "serve", "--local", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=dict(os.environ, OPENAI_API_KEY=""),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + 180
            while True:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
                try:
                    r = await http.get(base + "/api/health")
                    if r.status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "parley serve did not start"
                await asyncio.sleep(0.5)
        await wait_engine_ready(base + "/api/v1", proc, "relay", 180)
        yield base
    finally:
        stop_process(proc)
