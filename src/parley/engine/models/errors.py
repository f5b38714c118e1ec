"""The one error every backend raises when it cannot load."""

from __future__ import annotations


class ModelUnavailable(RuntimeError):
    """A stage's weights or package are missing; says what and how to fix it."""

    def __init__(self, stage: str, what_is_missing: str, how_to_fix: str) -> None:
        self.stage = stage
        self.what_is_missing = what_is_missing
        self.how_to_fix = how_to_fix
        super().__init__(f"{stage}: {what_is_missing} — {how_to_fix}")
