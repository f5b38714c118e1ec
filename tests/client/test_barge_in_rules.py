"""Both clients follow the README's barge-in table (what to stop, truncate, cancel and clear)."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path

import pytest

import parley
from parley.client.barge_in import Duties, duties, server_interrupts

BARGE_IN_JS = Path(parley.__file__).parent / "web/static/js/realtime/barge-in.js"

# (voice, server interrupts, over WebRTC, audible, active) → (stop, truncate, cancel, clear),
# for a client that does not truncate over WebRTC (the browser); the README's rows.
TABLE = {
    # speech_started, the server interrupts: it cancels (and over WebRTC clears and truncates) itself.
    (True, True, False, True, True): (True, True, False, False),
    (True, True, True, True, True): (True, False, False, False),
    (True, True, False, False, True): (False, False, False, False),
    # speech_started, interrupt_response false: the client stops the response.
    (True, False, False, True, True): (True, True, True, False),
    (True, False, True, True, True): (True, False, True, True),
    (True, False, False, False, True): (False, False, True, False),
    (True, False, True, True, False): (True, False, False, True),
    # By hand (stop key, push-to-talk, typing over the reply): always the client's job.
    (False, True, False, True, True): (True, True, True, False),
    (False, True, True, True, True): (True, False, True, True),
    (False, True, True, True, False): (True, False, False, True),
    (False, True, False, False, False): (False, False, False, False),
}
COMBINATIONS = list(itertools.product((False, True), repeat=5))


def _python(case: tuple[bool, ...], truncate_over_webrtc: bool) -> Duties:
    voice, interrupts, webrtc, audible, active = case
    return duties(
        voice=voice,
        server_interrupts=interrupts,
        over_webrtc=webrtc,
        audible=audible,
        active=active,
        truncate_over_webrtc=truncate_over_webrtc,
    )


def test_python_client_follows_the_table() -> None:
    for case, (stop, truncate, cancel, clear) in TABLE.items():
        assert _python(case, truncate_over_webrtc=False) == Duties(stop, truncate, cancel, clear), case
    # The Python client also truncates over WebRTC, to what reached its speaker (truncate_over_webrtc).
    assert _python((True, True, True, True, True), truncate_over_webrtc=True).truncate
    # A missing interrupt_response means the server interrupts (the GA default, and the engine's).
    assert server_interrupts({"audio": {"input": {"turn_detection": {"type": "server_vad"}}}})
    off = {"type": "server_vad", "interrupt_response": False}
    assert not server_interrupts({"audio": {"input": {"turn_detection": off}}})
    assert not server_interrupts({"audio": {"input": {"turn_detection": None}}})
    assert not server_interrupts({})


def test_browser_client_follows_the_table() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (make system-deps)")
    script = f"""
    import {{ bargeInDuties, serverInterrupts }} from {json.dumps(BARGE_IN_JS.as_uri())};
    const cases = {json.dumps(COMBINATIONS)};
    const out = cases.map(([voice, si, overWebRtc, audible, active]) => {{
      const d = bargeInDuties({{ voice, serverInterrupts: si, overWebRtc, audible, active }});
      return [d.stop, d.truncate, d.cancel, d.clear];
    }});
    const td = (t) => ({{ audio: {{ input: {{ turn_detection: t }} }} }});
    const defaults = [
      serverInterrupts(td({{ type: "server_vad" }})),
      serverInterrupts(td({{ type: "server_vad", interrupt_response: false }})),
      serverInterrupts(td(null)),
      serverInterrupts({{}}),
    ];
    console.log(JSON.stringify({{ out, defaults }}));
    """
    result = subprocess.run(
        [node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    browser = {tuple(case): tuple(d) for case, d in zip(COMBINATIONS, got["out"], strict=True)}
    for case, expected in TABLE.items():
        assert browser[case] == expected, case
    # Every other situation too: the browser and the Python client agree.
    for case in COMBINATIONS:
        d = _python(case, truncate_over_webrtc=False)
        assert browser[case] == (d.stop, d.truncate, d.cancel, d.clear), case
    assert got["defaults"] == [True, False, False, False]
