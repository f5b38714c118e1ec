"""A spoken turn through each installed local LLM option (--llm-model), over a real socket."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from parley.bench.speech import silence, synthesize
from parley.engine.config import EngineConfig, ModelConfig
from parley.engine.models import llm_catalog
from parley.engine.models.registry import load_stage
from parley.host.app import create_engine_app
from parley.host.runtime import EngineRuntime
from tests.engine.test_realtime_e2e import TRANSCRIPTION, connect
from tests.support.pacing import stream_pcm
from tests.support.servers import serve_app
from tests.support.text import words

pytestmark = [pytest.mark.models, pytest.mark.slow]

OPTIONS = [
    pytest.param(name, marks=pytest.mark.skipif(not m.installed(), reason=f"{name} is not installed"))
    for name, m in llm_catalog.CATALOG.items()
]


@pytest.mark.parametrize("name", OPTIONS)
async def test_spoken_turn_through_each_local_llm(models: Any, name: str) -> None:
    if name == llm_catalog.DEFAULT:
        llm = models.llm  # already loaded by the shared fixture
    else:
        llm = (await load_stage("llm", ModelConfig(llm_model=name))).model
    assert llm.decides_tools == llm_catalog.CATALOG[name].decides_tools
    runtime = EngineRuntime(EngineConfig(validate_events=True), models=dataclasses.replace(models, llm=llm))
    async with serve_app(create_engine_app(runtime)) as server, connect(server, **TRANSCRIPTION) as c:
        await stream_pcm(
            c.append,
            np.concatenate([silence(0.5), synthesize("What is the capital of France?"), silence(1.2)]),
        )
        done = await c.log.wait_for("response.done", timeout=120)
        assert done["response"]["status"] == "completed", done
        transcript = c.log.of("response.output_audio_transcript.done")[0]["transcript"]
        assert "paris" in words(transcript), transcript
