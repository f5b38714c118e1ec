"""Grammar-constrained greedy decoding for llama-cpp-python, fast.

llama-cpp-python's sampler chain applies a GBNF grammar to the *whole*
vocabulary (49k tokens for SmolLM2) at every step: ~50–100 ms a token on this
machine, 5–10× the cost of the model itself. llama.cpp's own ``common``
sampler avoids that by checking only the greedy choice against the grammar
and falling back to the full vocabulary when it is rejected; this does the
same through the C API. Greedy picks are almost always valid once the prompt
has primed the JSON, so a tool call costs about what plain text does.

Works on a ``Llama`` object through its documented ``eval``/``n_tokens``/
``input_ids`` and the context handle, keeping llama-cpp-python's prefix-cache
bookkeeping consistent so ordinary ``generate`` calls still reuse the cache.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np


class GrammarDecoder:
    def __init__(self, llm: Any) -> None:
        import llama_cpp

        self._c = llama_cpp
        self._llm = llm
        self._vocab = llm._model.vocab
        self._n_vocab = llm.n_vocab()
        self._ptr = ctypes.POINTER(llama_cpp.llama_token_data)
        self._one = (llama_cpp.llama_token_data * 1)()
        self._full = (llama_cpp.llama_token_data * self._n_vocab)()
        self._full_np = np.ctypeslib.as_array(self._full)
        self._full_np["id"] = np.arange(self._n_vocab)

    def prefill(self, tokens: list[int]) -> None:
        """Evaluate ``tokens``, reusing the longest cached prefix (at least one token is re-run for fresh logits)."""
        llm = self._llm
        cached = llm.input_ids[: llm.n_tokens]
        limit = min(len(cached), len(tokens) - 1)
        n = 0
        while n < limit and cached[n] == tokens[n]:
            n += 1
        llm.n_tokens = n  # eval() drops the KV cache from here on
        llm.eval(tokens[n:])

    def tokens(
        self, prompt: list[int], gbnf: str, should_stop: Callable[[], bool], limit: int
    ) -> Iterator[int]:
        """Greedy tokens allowed by ``gbnf`` until the grammar is complete (EOG), ``limit`` or a stop."""
        c = self._c
        sampler = c.llama_sampler_init_grammar(self._vocab, gbnf.encode(), b"root")
        if not sampler:
            raise ValueError("llama.cpp rejected the grammar")
        try:
            self.prefill(prompt)
            for _ in range(limit):
                if should_stop():
                    return
                logits = np.ctypeslib.as_array(
                    c.llama_get_logits_ith(self._llm._ctx.ctx, -1), shape=(self._n_vocab,)
                )
                token = int(np.argmax(logits))
                if not self._allowed(sampler, token, float(logits[token])):
                    token = self._best_allowed(sampler, logits)
                c.llama_sampler_accept(sampler, token)
                if c.llama_vocab_is_eog(self._vocab, token):
                    return
                yield token
                self._llm.eval([token])
        finally:
            c.llama_sampler_free(sampler)

    def _allowed(self, sampler: Any, token: int, logit: float) -> bool:
        one = self._one
        one[0].id, one[0].logit, one[0].p = token, logit, 0.0
        arr = self._c.llama_token_data_array(
            data=ctypes.cast(one, self._ptr), size=1, selected=-1, sorted=False
        )
        self._c.llama_sampler_apply(sampler, ctypes.byref(arr))
        return bool(np.isfinite(one[0].logit))

    def _best_allowed(self, sampler: Any, logits: np.ndarray) -> int:
        full = self._full_np
        full["id"] = np.arange(self._n_vocab)  # samplers may reorder the array
        full["logit"] = logits
        arr = self._c.llama_token_data_array(
            data=ctypes.cast(self._full, self._ptr), size=self._n_vocab, selected=-1, sorted=False
        )
        self._c.llama_sampler_apply(sampler, ctypes.byref(arr))
        best = int(np.argmax(full["logit"]))
        if not np.isfinite(full["logit"][best]):
            raise RuntimeError("no token satisfies the grammar")
        return int(full["id"][best])
