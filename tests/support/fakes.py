"""The fake model stages live in ``parley.bench.fake_models`` (the fuzz benchmark uses them too)."""

from parley.bench.fake_models import (
    EnergyVadStream,
    FakeLlm,
    FakeModels,
    FakeStt,
    FakeTts,
    FakeVad,
)

__all__ = ["EnergyVadStream", "FakeLlm", "FakeModels", "FakeStt", "FakeTts", "FakeVad"]
