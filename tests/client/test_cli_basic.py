"""``parley talk`` failure paths that need no models: no sound card, nobody listening, Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time

TALK = [sys.executable, "-m", "parley", "talk"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _run(args: list[str], limit: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ, COLUMNS="200"),
    )
    out, err = await asyncio.wait_for(proc.communicate(), limit)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_no_audio_device_message():
    code, _out, err = await _run([*TALK, "--plain", "--duration", "1"])
    assert code == 2
    assert "No audio device found" in err and "--input-wav" in err and "--list-devices" in err
    code, _out, err = await _run([*TALK, "--list-devices"])
    assert code == 2 and "No audio device found" in err


async def test_unreachable_server_message():
    port = free_port()
    code, out, err = await _run(
        [*TALK, "--plain", "--output-wav", "/dev/null", "--url", f"http://127.0.0.1:{port}/v1"]
    )
    assert code == 1
    assert "Cannot reach" in out + err and "parley engine" in out + err


async def test_ctrl_c_while_connecting_exits_at_once(tmp_path):
    """A server that accepts TCP but never answers the handshake: Ctrl-C must not wait for a timeout."""
    connected = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        await reader.read()  # say nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        proc = await asyncio.create_subprocess_exec(
            *TALK,
            "--plain",
            "--url",
            f"http://127.0.0.1:{port}/v1",
            "--output-wav",
            str(tmp_path / "a.wav"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        # Stuck in the handshake once it has connected (a fixed sleep raced Python's start-up under load).
        await asyncio.wait_for(connected.wait(), 60)
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 10)
        assert time.monotonic() - t0 < 3
        assert code == 0
