"""Map a chunk's phoneme timings onto the words of its text.

espeak phonemizes a sentence into space-separated phoneme words, but not one
per text word: it merges ("I am" → ``aɪɐm``, "on the" → ``ɔnðə``) and expands
("25" → ``twˈɛnti fˈaɪv``). Each text word is therefore also phonemized on its
own (≈15 µs a word), and that sequence is aligned to the sentence's phoneme
words by a small dynamic programme that allows merges and expansions. A
phoneme word shared by several text words is split in proportion to their
isolated phoneme counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from parley.engine.models.base import WordTiming

_PUNCT = set(",.!?;:")
_STRESS = set("ˈˌ")
_MAX_MERGE = 3  # iso words merged into one sentence word, or sentence words per iso word

PhonemizeWord = Callable[[str], str]


@dataclass
class _SentWord:
    chars: list[str] = field(default_factory=list)  # phonemes without stress marks
    spans: list[tuple[int, int]] = field(default_factory=list)  # samples, incl. stress marks

    @property
    def key(self) -> str:
        return "".join(self.chars)


def _sentence_words(phonemes: list[str], bounds: list[tuple[int, int]]) -> list[_SentWord]:
    words: list[_SentWord] = []
    current = _SentWord()
    pending_start: int | None = None  # a stress mark's start joins the next phoneme
    for p, (a, b) in zip(phonemes, bounds, strict=True):
        if p == " " or p in _PUNCT:
            if current.chars:
                words.append(current)
                current = _SentWord()
            pending_start = None
            continue
        if p in _STRESS:
            pending_start = a if pending_start is None else pending_start
            continue
        current.chars.append(p)
        current.spans.append((a if pending_start is None else pending_start, b))
        pending_start = None
    if current.chars:
        words.append(current)
    return words


def _iso_words(tokens: list[str], phonemize_word: PhonemizeWord) -> list[tuple[int, str]]:
    """(token index, phoneme word without stress) for each token's own phonemization."""
    out: list[tuple[int, str]] = []
    for i, token in enumerate(tokens):
        if not any(ch.isalnum() for ch in token):
            continue
        for w in phonemize_word(token).split():
            key = "".join(ch for ch in w if ch not in _STRESS and ch not in _PUNCT)
            if key:
                out.append((i, key))
    return out


def _cost(a: str, b: str) -> float:
    # Cheap similarity: both strings are short phoneme words from the same
    # phonemizer; length and edges separate candidates well enough, and this
    # keeps the whole DP well under a millisecond for typical chunks.
    la, lb = len(a), len(b)
    cost = abs(la - lb) / max(la, lb, 1)
    if a[:1] != b[:1]:
        cost += 0.3
    if a[-1:] != b[-1:]:
        cost += 0.2
    return cost


def _align(iso: list[str], sent: list[str]) -> list[tuple[int, int, int, int]]:
    """Monotonic alignment as (iso start, iso end, sent start, sent end) blocks."""
    n, m = len(iso), len(sent)
    if n == m:
        return [(i, i + 1, i, i + 1) for i in range(n)]
    inf = float("inf")
    dp = np.full((n + 1, m + 1), inf)
    back: dict[tuple[int, int], tuple[int, int]] = {}
    dp[0, 0] = 0.0
    for i in range(n + 1):
        for j in range(m + 1):
            base = dp[i, j]
            if base == inf:
                continue
            steps: list[tuple[int, int, float]] = [(1, 0, 1.0), (0, 1, 1.0)]  # skip one side
            for k in range(1, _MAX_MERGE + 1):
                if i + k <= n and j + 1 <= m:
                    steps.append((k, 1, _cost("".join(iso[i : i + k]), sent[j]) + 0.1 * (k - 1)))
            for r in range(2, _MAX_MERGE + 1):
                if i + 1 <= n and j + r <= m:
                    steps.append((1, r, _cost(iso[i], "".join(sent[j : j + r])) + 0.1 * (r - 1)))
            for di, dj, c in steps:
                ni, nj = i + di, j + dj
                if ni <= n and nj <= m and base + c < dp[ni, nj]:
                    dp[ni, nj] = base + c
                    back[ni, nj] = (i, j)
    blocks: list[tuple[int, int, int, int]] = []
    i, j = n, m
    while (i, j) != (0, 0):
        pi, pj = back[i, j]
        blocks.append((pi, i, pj, j))
        i, j = pi, pj
    return blocks[::-1]


def align_words(
    text: str,
    phonemes: list[str],
    bounds: list[tuple[int, int]],
    sample_rate: int,
    phonemize_word: PhonemizeWord,
) -> list[WordTiming]:
    """Word timings from exact per-phoneme sample spans."""
    tokens = text.split()
    sent = _sentence_words(phonemes, bounds)
    iso = _iso_words(tokens, phonemize_word)
    if not tokens:
        return []
    if not sent or not iso:
        return _zero_timings(tokens)
    pieces: dict[int, list[tuple[int, int]]] = {}
    for i0, i1, j0, j1 in _align([k for _, k in iso], [w.key for w in sent]):
        owners = [iso[i][0] for i in range(i0, i1)]
        spans = [s for w in sent[j0:j1] for s in w.spans]
        if not owners:
            continue  # a phoneme word no text word claims (rare): its time goes to nobody
        if not spans:  # an iso word espeak dropped in context: zero length at this point
            prev = max((e for v in pieces.values() for _, e in v), default=0)
            for o in owners:
                pieces.setdefault(o, []).append((prev, prev))
            continue
        if len(set(owners)) == 1:
            pieces.setdefault(owners[0], []).extend(spans)
            continue
        # Several text words in one phoneme word: split by their isolated lengths.
        lengths = np.array([len(iso[i][1]) for i in range(i0, i1)], dtype=float)
        cuts = np.rint(np.cumsum(lengths) / lengths.sum() * len(spans)).astype(int)
        start = 0
        for o, cut in zip(owners, cuts, strict=True):
            part = spans[start:cut]
            if not part:  # rounding left this word no phoneme: a zero-length mark at the boundary
                edge = spans[start - 1][1] if start > 0 else spans[0][0]
                part = [(edge, edge)]
            pieces.setdefault(o, []).extend(part)
            start = max(start, cut)
    return _finish(tokens, pieces, sample_rate)


def _finish(
    tokens: list[str], pieces: dict[int, list[tuple[int, int]]], sample_rate: int
) -> list[WordTiming]:
    out: list[WordTiming] = []
    prev_end = 0
    for i, token in enumerate(tokens):
        spans = pieces.get(i)
        if spans:
            start, end = min(a for a, _ in spans), max(b for _, b in spans)
        else:  # punctuation-only token: nothing spoken
            start = end = prev_end
        start = max(start, prev_end)  # keep timings monotonic
        end = max(end, start)
        out.append(WordTiming(token, start / sample_rate, end / sample_rate))
        prev_end = end
    return out


def _zero_timings(tokens: list[str]) -> list[WordTiming]:
    return [WordTiming(t, 0.0, 0.0) for t in tokens]


def voiced_span(pcm: np.ndarray, sample_rate: int, threshold_db: float = -35.0) -> tuple[int, int]:
    """First and last sample of the part louder than ``threshold_db`` re. the peak (10 ms frames)."""
    if len(pcm) == 0:
        return 0, 0
    x = pcm.astype(np.float32)
    hop = max(1, sample_rate // 100)
    n = len(x) // hop
    if n == 0:
        return 0, len(x)
    rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1))
    loud = np.nonzero(rms > rms.max() * 10 ** (threshold_db / 20))[0]
    if len(loud) == 0:
        return 0, len(x)
    return int(loud[0] * hop), int(min(len(x), (loud[-1] + 1) * hop))


def proportional_timings(
    text: str, pcm: np.ndarray, sample_rate: int, phonemize_word: PhonemizeWord
) -> list[WordTiming]:
    """Fallback: share the voiced span out by each word's phoneme count."""
    tokens = text.split()
    if not tokens:
        return []
    start, end = voiced_span(pcm, sample_rate)
    counts = np.zeros(len(tokens))
    for i, key in _iso_words(tokens, phonemize_word):
        counts[i] += len(key)
    if counts.sum() == 0:
        return _zero_timings(tokens)
    edges = start + np.concatenate([[0], np.cumsum(counts)]) / counts.sum() * (end - start)
    pieces = {i: [(int(edges[i]), int(edges[i + 1]))] for i in range(len(tokens)) if counts[i]}
    return _finish(tokens, pieces, sample_rate)
