"""``parley bench webrtc``: how fast a WebRTC call is up, on loopback.

Each connect is what a browser does: create an offer, POST it to
``/v1/realtime/calls`` without candidates, apply the answer, and wait for the
``oai-events`` channel to open and for ``session.created`` on it. Measured
per connect (milliseconds, from the start of the offer unless noted):

* ``post_to_answer_ms``: the HTTP round trip (server-side offer handling and
  candidate gathering);
* ``offer_to_open_ms``: until the data channel is open (ICE, DTLS, SCTP) —
  the headline figure, target ≤ 300 ms p50;
* ``offer_to_session_created_ms``: until ``session.created`` arrives;
* ``post_to_open_ms``: the same as a browser sees it (it POSTs before
  gathering, so its own offer costs nothing).

The engine runs as a separate process (its own core, as in production)
unless ``url`` points at a running one. Results go to
``bench/results/webrtc_connect.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from parley.bench.turn import summary
from parley.bench.webrtc_peer import RealtimePeer
from parley.media.ice import allow_loopback_candidates

DEFAULTS: dict[str, Any] = {
    "connects": 20,
    "warmup": 2,
    "url": None,
    "out": Path("bench/results/webrtc_connect.json"),
}
TARGET_P50_MS = 300.0


async def connect_once(url: str, token: str | None = None) -> dict[str, float]:
    """One full connect and hang-up; milliseconds of each phase."""
    peer = RealtimePeer()
    try:
        t0 = time.perf_counter()
        await peer.connect(url, token)
        await peer.wait_open()
        await peer.wait_for("session.created")
        t = {**peer.times, "start": t0}

        def ms(a: str, b: str) -> float:
            return round((t[b] - t[a]) * 1000, 2)

        return {
            "post_to_answer_ms": ms("post", "answer"),
            "offer_to_open_ms": ms("start", "channel_open"),
            "offer_to_session_created_ms": ms("start", "session_created"),
            "post_to_open_ms": ms("post", "channel_open"),
        }
    finally:
        await peer.close()


async def measure(
    connects: int = 20, url: str | None = None, warmup: int = 2, token: str | None = None
) -> dict[str, Any]:
    """Connect ``warmup + connects`` times, one after another; the report (not yet written)."""
    allow_loopback_candidates()  # this process is the peer; the engine does its own
    async with _engine(url) as calls_url:
        for _ in range(warmup):
            await connect_once(calls_url, token)
        rows = []
        for _ in range(connects):
            rows.append(await connect_once(calls_url, token))
            await asyncio.sleep(0.05)  # let the previous call's teardown finish off the clock
    keys = list(rows[0]) if rows else []
    metrics = {k: summary([r[k] for r in rows]) for k in keys}
    p50 = metrics.get("offer_to_open_ms", {}).get("p50")
    return {
        "benchmark": "webrtc_connect",
        "connects": connects,
        "warmup": warmup,
        "engine": url or "subprocess on 127.0.0.1",
        "target_p50_ms": TARGET_P50_MS,
        "meets_target": p50 is not None and p50 <= TARGET_P50_MS,
        "metrics": metrics,
        "runs": rows,
    }


class _engine:
    """The calls URL of a running engine, or of one started for the run (``parley engine``)."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self._process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> str:
        if self.url:
            return self.url
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = dict(os.environ, HF_HUB_OFFLINE="1", PARLEY_VALIDATE_EVENTS="0")
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "parley",
            "engine",
            "--port",
            str(port),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}/v1/realtime/calls"
        await self._ready(url)
        return url

    async def _ready(self, url: str, within: float = 180.0) -> None:
        # Ready once the calls route judges an offer (400 for this empty one), not 503 "loading".
        assert self._process is not None
        deadline = time.monotonic() + within
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                if self._process.returncode is not None:
                    err = (await self._process.stderr.read()).decode()[-2000:] if self._process.stderr else ""
                    raise RuntimeError(f"the engine exited: {err}")
                with contextlib.suppress(httpx.HTTPError):
                    r = await http.post(url, content=b"", headers={"Content-Type": "application/sdp"})
                    if r.status_code == 400:
                        return
                await asyncio.sleep(0.25)
        raise TimeoutError("the engine did not become ready")

    async def __aexit__(self, *exc: object) -> None:
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 10)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n", "--connects", type=int, default=DEFAULTS["connects"], help="measured connects (20)"
    )
    parser.add_argument(
        "--warmup", type=int, default=DEFAULTS["warmup"], help="unmeasured connects first (2)"
    )
    parser.add_argument(
        "--url", default=None, help="a running engine's calls URL (http://127.0.0.1:8765/v1/realtime/calls)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULTS["out"])


def run(args: argparse.Namespace | None = None, **options: Any) -> int:
    """``parley bench webrtc``, or call directly: ``run(connects=20, url=None, out=...)``."""
    given = {k: v for k, v in vars(args).items() if k in DEFAULTS} if args is not None else {}
    opts = {**DEFAULTS, **given, **options}
    report = asyncio.run(measure(opts["connects"], opts["url"], opts["warmup"]))
    out = Path(opts["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    _print(report, out)
    return 0


def _print(report: dict[str, Any], out: Path) -> None:
    print(f"parley bench webrtc — {report['connects']} connects on loopback ({report['engine']})")
    for key, s in report["metrics"].items():
        print(f"  {key:<30} p50 {s['p50']:7.1f} ms   p95 {s['p95']:7.1f} ms   max {s['max']:7.1f} ms")
    verdict = "meets" if report["meets_target"] else "MISSES"
    print(f"  offer → data channel open {verdict} the ≤ {TARGET_P50_MS:.0f} ms p50 target · written to {out}")
