"""Clause chunker: streamed LLM text → pieces worth sending to TTS.

The first piece is cut early (at the first comma or sentence end with a couple
of words, or after a handful of words) because it sets the turn latency; the
second is cut at a comma too and stays short, so it is ready before the first
has played; later pieces are whole sentences, which Piper phrases better.
"""

from __future__ import annotations

import re

_MARKUP = re.compile(r"[*_`#>|~]+|\[(.*?)\]\((.*?)\)")
_EMOJI = re.compile("[\U0001f300-\U0001faff\U00002600-\U000027bf\U0001f000-\U0001f2ff]")
_SPACES = re.compile(r"\s+")


def speakable(text: str) -> str:
    """Strip markdown and emoji that a voice cannot say; keep the words."""
    text = _MARKUP.sub(lambda m: m.group(1) or "", text)
    text = _EMOJI.sub("", text)
    return _SPACES.sub(" ", text)


# Words a spoken phrase often starts with: good places for an early cut.
_PHRASE_STARTS = {
    "and",
    "but",
    "or",
    "so",
    "because",
    "which",
    "that",
    "who",
    "when",
    "where",
    "while",
    "if",
    "although",
    "on",
    "in",
    "at",
    "of",
    "for",
    "with",
    "to",
    "from",
    "by",
    "about",
    "like",
    "as",
    "than",
    "into",
}


def _words(text: str) -> int:
    return len(text.split())


class ClauseChunker:
    def __init__(
        self,
        first_min_words: int = 2,
        first_max_words: int = 7,
        min_words: int = 4,
        max_words: int = 30,
        second_max_words: int = 14,
    ) -> None:
        self.first_min_words = first_min_words
        self.first_max_words = first_max_words
        self.second_max_words = second_max_words
        self.min_words = min_words
        self.max_words = max_words
        self._buffer = ""
        self._emitted = 0

    def push(self, text: str) -> list[str]:
        self._buffer += text
        out: list[str] = []
        while (piece := self._cut()) is not None:
            out.append(piece)
        return out

    def flush(self) -> list[str]:
        rest = speakable(self._buffer).strip()
        self._buffer = ""
        return [rest] if rest else []

    def _cut(self) -> str | None:
        first = self._emitted == 0
        # The second piece is cut at a comma too and kept short: it must be synthesised while
        # the first (a few words, ~1.5 s of audio) plays, and with several conversations on the
        # engine a whole long sentence there left a gap (measured with `parley bench load`).
        early = self._emitted < 2
        buf = self._buffer
        min_words = self.first_min_words if first else self.min_words
        # Punctuation counts as a boundary only once the next character is
        # known to be whitespace ("3.5" and "e.g." stay whole).
        boundary = r"[,;:.!?]" if early else r"[.!?;:]"
        for m in re.finditer(boundary + r"[\"')\]]*(?=\s)", buf):
            candidate = buf[: m.end()]
            if _words(candidate) >= min_words:
                return self._take(m.end())
        limit = self.first_max_words if first else self.second_max_words if early else self.max_words
        # A word is complete once whitespace follows it (LLM tokens carry their
        # leading space, so the buffer itself rarely ends in whitespace).
        complete = len(re.findall(r"\S+(?=\s)", buf))
        if complete >= limit:
            # No punctuation in sight: cut after ``limit`` words, or earlier
            # before a word that starts a phrase ("…blue | on a clear day").
            if early:
                return self._take(self._phrase_cut(buf, limit))
            cut_at = self._nth_word_end(buf, limit)
            comma = buf.rfind(",", 0, cut_at)
            return self._take(comma + 1 if comma > 0 else cut_at)
        return None

    def _phrase_cut(self, buf: str, limit: int) -> int:
        words = list(re.finditer(r"\S+", buf))[:limit]
        for k in range(len(words) - 1, self.first_min_words, -1):
            if words[k].group().lower().strip("\"'(") in _PHRASE_STARTS:
                return words[k - 1].end()
        return words[-1].end()

    @staticmethod
    def _nth_word_end(buf: str, n: int) -> int:
        count = 0
        for m in re.finditer(r"\S+", buf):
            count += 1
            if count == n:
                return m.end()
        return len(buf)

    def _take(self, end: int) -> str | None:
        piece = speakable(self._buffer[:end]).strip()
        self._buffer = self._buffer[end:]
        if not piece:
            return None
        self._emitted += 1
        return piece
