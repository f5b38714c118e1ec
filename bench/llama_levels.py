"""Prompt evaluation and decode speed of one llama.cpp build: how the build levels were chosen.

    LLAMA_CPP_LIB_PATH=<dir with libllama.so> python bench/llama_levels.py MODEL.gguf

Unset LLAMA_CPP_LIB_PATH for the installed build. Prints one JSON line: the median over five
runs of a 152-token prompt (tok/s) and of 48 greedy tokens after it (tok/s), 2 threads.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import llama_cpp
from llama_cpp import Llama


def main(path: str) -> None:
    info = llama_cpp.llama_print_system_info().decode()
    llm = Llama(path, n_ctx=2048, n_threads=2, n_threads_batch=2, n_batch=512, verbose=False)
    prompt = (
        "You are a helpful voice assistant. " * 20
    ) + "Tell me about the city of Paris in a few sentences."
    tokens = llm.tokenize(prompt.encode())
    prompt_rates, decode_rates = [], []
    for _ in range(5):
        llm.reset()
        started = time.perf_counter()
        llm.eval(tokens)
        prompt_rates.append(len(tokens) / (time.perf_counter() - started))
        n, started = 0, time.perf_counter()
        for _token in llm.generate([], temp=0.0, reset=False):
            n += 1
            if n >= 48:
                break
        decode_rates.append(n / (time.perf_counter() - started))
    features = [f for f in ("AVX2", "AVX512", "AVX512_VNNI", "AVX512_BF16", "AMX_INT8") if f"{f} = 1" in info]
    print(
        json.dumps(
            {
                "model": path.rsplit("/", 1)[-1],
                "features": features,
                "prompt_tokens": len(tokens),
                "prompt_tok_s": round(statistics.median(prompt_rates), 1),
                "decode_tok_s": round(statistics.median(decode_rates), 1),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
