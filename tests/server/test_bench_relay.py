"""``parley bench relay`` runs end to end at a tiny scale (the figures themselves come from the full run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]  # spawns the benchmark (~17 s): not in make test-fast


def test_bench_relay_smoke(tmp_path: Path) -> None:
    out = tmp_path / "relay.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "parley",
            "bench",
            "relay",
            "--sessions",
            "3",
            "--seconds",
            "1",
            "--warmup",
            "0.5",
            "--rounds",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(out.read_text())
    for mode in ("direct", "relayed"):
        assert report[mode]["error_count"] == 0
        assert report[mode]["received"] == report[mode]["sent"] >= 0.9 * report[mode]["expected"]
        assert report[mode]["up"]["n"] > 50 and report[mode]["up"]["p50_ms"] is not None
    assert set(report["added"]) == {"up", "down", "round_trip"}
    assert "echo" in report["note"]
