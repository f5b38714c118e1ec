"""Each live session keeps its evaluated prompt, so sessions with different prompts don't evict each other.

llama.cpp holds one KV cache; llama-cpp-python reuses the longest common token prefix of the
last prompt and re-evaluates the rest. A session's prompt starts with its own system block
(instructions, tool schemas): when two sessions alternate, each turn would pay for evaluating
its whole system block again (hundreds of tokens, seconds on two cores). So after each
evaluation the sequence's KV cells are copied out (``llama_state_seq_get_data``: only the
cells of sequence 0, no logits; ~12 KB per token for Qwen2.5-0.5B) under the session's key, and
put back before that session's next evaluation when they cover more of its prompt than what
the cache holds. Entries are evicted least-recently-used beyond a byte budget.

Any saved state may serve any session: sessions opened by the same page share their system
block (the page's instructions and ``parley serve``'s tools), so a new session starts from
the longest common prefix among all of them instead of evaluating its system block again.
A session that ends leaves its state behind as such a donor (the last ``KEEP_ENDED`` of
them), and ``parley serve`` leaves one for the page's default session at start-up.
"""

from __future__ import annotations

import ctypes
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_BUDGET_BYTES = 256 << 20
# States of ended sessions kept as donors for the next session with the same system block.
KEEP_ENDED = 2
_SEQ = 0  # Parley decodes one sequence at a time


@dataclass
class _Saved:
    tokens: list[int]
    blob: bytes


def common_prefix(a: Any, b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class PromptStates:
    """Saved KV prefixes of one ``llama_cpp.Llama``, by session key. Call with the model's lock held."""

    def __init__(self, llm: Any, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self._llm = llm
        self._budget = budget_bytes
        self._saved: OrderedDict[str, _Saved] = OrderedDict()
        self._ended: OrderedDict[str, None] = OrderedDict()  # keys whose session is over, oldest first
        self.restores = 0  # how often a saved prefix was put back (tests and metrics read it)

    @property
    def size_bytes(self) -> int:
        return sum(len(s.blob) for s in self._saved.values())

    def cached_tokens(self) -> list[int]:
        return list(self._llm.input_ids[: self._llm.n_tokens])

    def restore_for(self, key: str | None, tokens: list[int]) -> int:
        """Put back the saved state that covers most of ``tokens``, if it covers more than the cache.

        ``key``'s own state wins a tie (it is the one whose later turns follow). Returns how
        many leading tokens of ``tokens`` are now evaluated.
        """
        live = common_prefix(self.cached_tokens(), tokens)
        best_key, usable = None, live
        own = self._saved.get(key) if key is not None else None
        if own is not None:
            self._saved.move_to_end(key)  # type: ignore[arg-type]
        for name, saved in self._saved.items():
            n = common_prefix(saved.tokens, tokens)
            if n > usable or (n == usable and n > live and name == key):
                best_key, usable = name, n
        if best_key is None:
            return live
        saved = self._saved[best_key]
        llama_cpp = _bindings()
        ctx = self._llm._ctx.ctx
        self._llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        buf = (ctypes.c_uint8 * len(saved.blob)).from_buffer_copy(saved.blob)
        if not llama_cpp.llama_state_seq_set_data(ctx, buf, len(saved.blob), _SEQ):
            log.warning("llama: could not restore a saved prompt state; evaluating it again")
            self._llm.n_tokens = 0
            self._drop(best_key)
            return 0
        n = len(saved.tokens)
        self._llm.input_ids[:n] = saved.tokens
        # Only the common part counts: the next evaluation overwrites the cells after it.
        self._llm.n_tokens = usable
        self._llm._requires_eval = True  # logits are not part of the saved state
        self.restores += 1
        return usable

    def save(self, key: str | None) -> None:
        """Copy out the evaluated sequence under ``key``."""
        if key is None or self._llm.n_tokens == 0:
            return
        llama_cpp = _bindings()
        ctx = self._llm._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, _SEQ)
        buf = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buf, size, _SEQ)
        if not written:
            return
        # string_at copies the bytes in one go; bytes(buf[:n]) built a list of n ints (150 ms for 10 MB).
        self._saved[key] = _Saved(self.cached_tokens(), ctypes.string_at(buf, written))
        self._saved.move_to_end(key)
        while self.size_bytes > self._budget and len(self._saved) > 1:
            self._drop(next(iter(self._ended), None) or next(iter(self._saved)))

    def forget(self, key: str) -> None:
        """``key``'s session is over: its state stays as a donor until ``KEEP_ENDED`` newer ones replace it."""
        if key not in self._saved:
            return
        self._ended[key] = None
        self._ended.move_to_end(key)
        while len(self._ended) > KEEP_ENDED:
            self._drop(next(iter(self._ended)))

    def _drop(self, key: str) -> None:
        self._saved.pop(key, None)
        self._ended.pop(key, None)

    def __contains__(self, key: str) -> bool:
        return key in self._saved


def _bindings() -> Any:
    import llama_cpp

    return llama_cpp
