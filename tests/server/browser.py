"""Headless Debian Chromium for WebRTC tests on loopback, and the prebuilt ``@openai/agents-realtime`` bundle.

Flags and pitfalls are the ones measured in shared/docs/browser-webrtc.md:
loopback ICE, no mDNS, no name resolution but 127.0.0.1, a WAV-fed fake
microphone, autoplay allowed. Playwright's own ``--disable-features`` list is
merged with ours, since Chromium only honours the last such flag.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import playwright

REPO = Path(__file__).resolve().parents[2]
NPM_PREFIX = REPO / ".cache" / "npm"
AGENTS_REALTIME_VERSION = "0.20.0"
BUNDLE_DIR = NPM_PREFIX / "node_modules" / "@openai" / "agents-realtime" / "dist" / "bundle"
ARTIFACTS = REPO / "artifacts"
CHROMIUM = "/usr/bin/chromium"


def sdk_bundle() -> Path:
    """The SDK's prebuilt browser bundle; installed from npm on first use (``make sdk-bundle`` does it ahead,
    since the browser tests themselves run with loopback only)."""
    if not (BUNDLE_DIR / "openai-realtime-agents.mjs").is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is not installed: apt-get install npm (or run make sdk-bundle)")
        result = subprocess.run(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(NPM_PREFIX),
                f"@openai/agents-realtime@{AGENTS_REALTIME_VERSION}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0 or not BUNDLE_DIR.is_dir():
            raise RuntimeError(
                f"npm install @openai/agents-realtime failed (no network here? run make sdk-bundle "
                f"first):\n{result.stderr[-2000:]}"
            )
    return BUNDLE_DIR


def _playwright_disabled_features() -> list[str]:
    """Playwright's default --disable-features list, read from the driver it ships."""
    bundle = Path(playwright.__file__).parent / "driver" / "package" / "lib" / "coreBundle.js"
    try:
        text = bundle.read_text()
    except OSError:
        return []
    match = re.search(r"disabledFeatures = \[(.*?)\];", text, re.S)
    if not match:
        return []
    body = re.sub(r"//[^\n]*", "", match.group(1))
    return re.findall(r'"([A-Za-z0-9_]+)"', body)


def chromium_args(wav: Path) -> list[str]:
    disabled = [*_playwright_disabled_features(), "WebRtcHideLocalIpsWithMdns"]
    return [
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
        "--autoplay-policy=no-user-gesture-required",
        "--allow-loopback-in-peer-connection",
        f"--disable-features={','.join(dict.fromkeys(disabled))}",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ]
