"""``parley serve`` options: upstream choice, and refusing to expose the server's key without a token."""

from __future__ import annotations

import argparse

import pytest

from parley.server import cli
from parley.server.config import OPENAI_BASE_URL, normalize_base_url, resolve_upstream


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    return parser.parse_args(list(argv))


def test_upstream_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("PARLEY_UPSTREAM_KEY", raising=False)
    assert resolve_upstream(None, None, False) == (None, None)  # the embedded engine
    monkeypatch.setenv("OPENAI_API_KEY", "key-from-env")
    assert resolve_upstream(None, None, False) == (OPENAI_BASE_URL, "key-from-env")
    assert resolve_upstream(None, None, True) == (None, None)  # --local wins
    assert resolve_upstream("http://127.0.0.1:8765", "k", False) == ("http://127.0.0.1:8765/v1", "k")
    config = cli.config_from_args(parse())
    assert config.upstream_kind == "openai"
    config = cli.config_from_args(parse("--upstream", "http://127.0.0.1:9/v1", "--upstream-key", "k"))
    assert config.upstream_kind == "custom" and config.upstream_url == "http://127.0.0.1:9/v1"
    assert normalize_base_url("https://example.com/openai/v1/") == "https://example.com/openai/v1"
    with pytest.raises(ValueError):
        normalize_base_url("ftp://example.com")


def test_refuses_public_bind_without_access_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PARLEY_ACCESS_TOKEN", raising=False)
    assert cli.run(parse("--host", "0.0.0.0")) == 2
    assert "PARLEY_ACCESS_TOKEN" in capsys.readouterr().err
    assert cli.run(parse("--upstream", "not a url")) == 2


def test_public_bind_gives_the_embedded_engine_a_private_key() -> None:
    from parley.server.upstream import LocalUpstream
    from tests.support.serve import fake_runtime

    runtime = fake_runtime()
    LocalUpstream(runtime, bound_to_loopback=False)
    assert runtime.config.api_key and runtime.auth.api_key == runtime.config.api_key
    # A loopback-only engine keeps the engine's own key-less loopback rule.
    other = fake_runtime()
    LocalUpstream(other, bound_to_loopback=True)
    assert other.config.api_key is None
