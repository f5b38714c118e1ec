"""Comparing transcripts: normalised words and overlap scores."""

from __future__ import annotations

import re

_NUMBERS = {
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
}


def words(text: str) -> list[str]:
    tokens = re.findall(r"[a-z0-9']+", text.lower().replace("-", " "))
    return [_NUMBERS.get(t, t) for t in tokens]


def recall(expected: str, heard: str) -> float:
    """Share of the expected words that appear in what was heard (order-insensitive)."""
    exp, got = words(expected), words(heard)
    if not exp:
        return 1.0 if not got else 0.0
    pool = list(got)
    hits = 0
    for w in exp:
        if w in pool:
            pool.remove(w)
            hits += 1
    return hits / len(exp)


def similar(a: str, b: str, threshold: float = 0.8) -> bool:
    return min(recall(a, b), recall(b, a)) >= threshold


def char_similarity(a: str, b: str) -> float:
    """difflib ratio of the two texts' letters and digits (robust to "France is" ↔ "Francis")."""
    import difflib

    return difflib.SequenceMatcher(None, "".join(words(a)), "".join(words(b))).ratio()
