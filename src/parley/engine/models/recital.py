"""A reply must not read its own prompt aloud.

Qwen2.5-Coder-0.5B, asked to answer in words after a tool call it wanted was turned down,
sometimes recites the system block instead: "It's raining here." → "You're Parley, a friendly
voice assistant in a live spoken conversation. Everything you say is turned into speech…",
then the tool schemas, for 256 tokens of speech. :class:`RecitalGuard` watches a reply and
ends it where it starts copying the prompt's own text: a run of ``N_WORDS`` words that also
stands in the prompt, or a name that is never spoken (a tool's ``snake_case`` name). Words
held back (the start of a reply that may recite from its first word) are let through only up
to the last sentence that ends before the recital.
"""

from __future__ import annotations

import re

N_WORDS = 6  # a run this long copied from the instructions is a recital, not a shared phrase
HOLD_WORDS = 20  # held back at the start of a reply that may recite: most such replies are shorter
_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class RecitalGuard:
    def __init__(self, prompt_text: str, hold_words: int = HOLD_WORDS, names: tuple[str, ...] = ()) -> None:
        words = _words(prompt_text)
        self._names = tuple(n for n in names if "_" in n)  # "calculate" may be said, "clear_notes" not
        self._runs = {tuple(words[i : i + N_WORDS]) for i in range(len(words) - N_WORDS + 1)}
        self._hold_words = hold_words
        self._text = ""  # the reply so far
        self._sent = 0  # characters of it already let through
        self.recited = False

    def push(self, text: str) -> str:
        """Add generated text; returns what may be spoken now."""
        if self.recited:
            return ""
        self._text += text
        spans = list(_WORD.finditer(self._text.lower()))
        words = [m.group() for m in spans]
        starts = [self._text.find(name, max(0, self._sent - len(name))) for name in self._names]
        starts += [
            spans[i].start()
            for i in range(len(words) - N_WORDS + 1)
            if tuple(words[i : i + N_WORDS]) in self._runs
        ]
        starts = [i for i in starts if i >= 0]
        if starts:
            self.recited = True
            return self._release(upto=self._sentence_before(min(starts)))
        if self._sent == 0 and len(words) < self._hold_words:
            return ""
        return self._release(upto=len(self._text))

    def flush(self) -> str:
        """The end of the reply: whatever was held back, unless it was a recital."""
        return "" if self.recited else self._release(upto=len(self._text))

    def _sentence_before(self, index: int) -> int:
        """The end of the last whole sentence before ``index`` (not before what was let through)."""
        ends = [m.end() for m in _SENTENCE_END.finditer(self._text, 0, index)]
        return max([self._sent, *ends])

    def _release(self, upto: int) -> str:
        out = self._text[self._sent : upto]
        self._sent = max(self._sent, upto)
        return out
