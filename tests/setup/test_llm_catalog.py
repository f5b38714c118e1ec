"""Local LLM weights: joined from their parts, accepted only with the pinned size and sha256."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from parley.engine.config import ModelConfig
from parley.engine.models import llm_catalog
from parley.engine.models.errors import ModelUnavailable


def _fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sha: str | None = None) -> llm_catalog.LocalLLM:
    parts = {"part-a": tmp_path / "a.bin", "part-b": tmp_path / "b.bin"}
    parts["part-a"].write_bytes(b"GGUF" + b"x" * 1000)
    parts["part-b"].write_bytes(b"y" * 500)
    whole = parts["part-a"].read_bytes() + parts["part-b"].read_bytes()
    monkeypatch.setattr(llm_catalog, "_part_path", lambda dist, rel: parts.get(dist))
    return llm_catalog.LocalLLM(
        "fake",
        "Fake LLM",
        (("part-a", "a"), ("part-b", "b")),
        len(whole),
        sha or hashlib.sha256(whole).hexdigest(),
        "pip install fake",
        decides_tools=True,
        needs_few_shot=False,
    )


def test_parts_are_joined_and_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _fake(tmp_path, monkeypatch)
    cache = tmp_path / "cache"
    assert not llm_catalog.ready(cache, model)
    path = llm_catalog.prepare(cache, model)
    assert path.read_bytes().startswith(b"GGUF") and path.stat().st_size == model.size
    assert llm_catalog.ready(cache, model) and llm_catalog.verify(cache, model)


def test_a_hash_mismatch_is_refused_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _fake(tmp_path, monkeypatch, sha="0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(ModelUnavailable) as err:
        llm_catalog.prepare(cache, model)
    assert "refusing to load them" in err.value.what_is_missing and "pip install fake" in err.value.how_to_fix
    assert not llm_catalog.gguf_path(cache, model).exists() and not llm_catalog.ready(cache, model)


def test_missing_parts_and_unknown_names_say_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _fake(tmp_path, monkeypatch)
    monkeypatch.setattr(llm_catalog, "_part_path", lambda dist, rel: None)
    with pytest.raises(ModelUnavailable) as err:
        llm_catalog.prepare(tmp_path, model)
    assert "not installed" in err.value.what_is_missing and err.value.how_to_fix == "pip install fake"
    with pytest.raises(ModelUnavailable) as unknown:
        llm_catalog.get("gpt-5-local")
    assert "qwen2.5-0.5b" in unknown.value.how_to_fix


def test_the_catalogue_pins_every_file() -> None:
    assert llm_catalog.DEFAULT == "qwen2.5-0.5b" and ModelConfig().llm_model in (None, *llm_catalog.CATALOG)
    for model in llm_catalog.CATALOG.values():
        assert len(model.sha256) == 64 and int(model.sha256, 16) and model.size > 50_000_000
    assert (
        llm_catalog.CATALOG["qwen2.5-0.5b"].decides_tools and not llm_catalog.CATALOG["smollm2"].decides_tools
    )


@pytest.mark.skipif(
    not llm_catalog.CATALOG["qwen2.5-0.5b"].installed(), reason="default LLM packages not installed"
)
def test_the_installed_default_model_verifies(tmp_path: Path) -> None:
    """The real six parts join into the pinned file (this reads 491 MB)."""
    model = llm_catalog.CATALOG["qwen2.5-0.5b"]
    cache = ModelConfig().cache_dir
    llm_catalog.prepare(cache, model)
    assert llm_catalog.verify(cache, model)
