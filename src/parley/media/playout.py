"""What the listener actually heard of a response, as reported by whatever plays it out."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PlayoutPosition:
    """How far the listener got: ``played_ms`` of ``item_id``'s audio went out."""

    response_id: str
    item_id: str
    played_ms: int
