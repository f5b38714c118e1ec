"""SmolLM2-135M-Instruct (or any chat GGUF) through llama-cpp-python.

One persistent ``Llama``: llama-cpp-python keeps the KV cache of the last
prompt and re-evaluates only what changed, so the prompt always starts with
the same system block (voice preamble, session instructions, few-shot turns)
and a new turn costs only its own tokens.

Generation runs in a worker thread that feeds an asyncio queue; a
``threading.Event`` checked after every token stops it within one token when
the consumer closes the stream (barge-in). A lock serialises generations:
there is one model and one KV cache.

Decoding is greedy with a repeat penalty whatever ``temperature`` the request
carries: sampled, SmolLM2-135M drifts into nonsense within a sentence.

Tool calls are grammar-constrained (GBNF from the tool's JSON Schema), so the
arguments are always valid JSON matching the schema, even from a 135M model:

* ``function``: the arguments are generated directly;
* ``required``: the tool name is chosen by a grammar over the names, then the
  arguments by that tool's schema;
* ``auto``: the tools are described in the system prompt; if the reply starts
  with ``<tool_call>`` the free text is abandoned and the call is produced by
  the two constrained steps above (best effort: the 135M model rarely chooses
  to call a tool on its own).
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import re
import threading
from collections import deque
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parley.engine.models.base import (
    ChatChunk,
    ChatMessage,
    ChatRequest,
    Finish,
    TextDelta,
    ToolCallDelta,
    ToolSpec,
)
from parley.engine.models.llama_grammar import GrammarDecoder
from parley.engine.models.llama_prompt_cache import PromptStates
from parley.engine.models.llm_tools import (
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    bounded_schema,
    describe_tools,
    new_call_id,
)
from parley.engine.models.model_turns import ModelTurns
from parley.engine.models.priority import PRIORITY
from parley.engine.models.recital import HOLD_WORDS, RecitalGuard
from parley.engine.models.tool_words import grounded, mentions

log = logging.getLogger(__name__)

VOICE_PREAMBLE = (
    "You are a helpful voice assistant. Your replies are spoken aloud, so answer in one or two "
    "short, natural sentences of plain text, without lists or markdown."
)

# Two short turns measurably help SmolLM2-135M: zero-shot it often refuses
# commands ("as a voice assistant I can only…") and rambles; with these it
# answers briefly and in the first person (see tests/models/test_llm.py).
FEW_SHOT: tuple[tuple[str, str], ...] = (
    ("user", "Add milk to my shopping list."),
    ("assistant", "Okay, I added milk to your shopping list."),
    ("user", "Who wrote Hamlet?"),
    ("assistant", "Hamlet was written by William Shakespeare."),
)

# Added to the few-shot when tools are offered in "auto" mode. Measured on
# SmolLM2-135M: without it the model never chose a tool ("What's the weather
# in Berlin?" → "mostly sunny"); with it, it calls get_weather there and still
# answers trivia directly. The tool is fictional so it fits any tool list; the
# name actually called is then chosen by grammar among the real tools.
TOOL_SHOT: tuple[tuple[str, str], ...] = (
    ("user", "What's the time in Tokyo?"),
    ("assistant", TOOL_CALL_OPEN + '{"name": "get_time", "arguments": {"city": "Tokyo"}}' + TOOL_CALL_CLOSE),
)


def result_note(tool: str, result: str) -> str:
    """How a tool's result reaches a model that decides tools itself (a system turn; see _to_chat)."""
    return f"Result of the {tool} tool: {result}\nReply to the user in one short spoken sentence with this result."


DEFAULT_MAX_TOKENS = 256
TOOL_MAX_TOKENS = 384
REPEAT_PENALTY = 1.1
# Tokens per prefill step: small enough that a turn waiting for the model gets it within
# ~0.3 s on two cores, large enough to keep batched evaluation efficient.
PREFILL_STEP = 64
_SAFETY_TOKENS = 8
# A reply gives way to another session waiting for the model once it has written this many
# tokens: past a short first clause, which its listener is waiting for too.
GIVE_WAY_AFTER_TOKENS = 12
# A model that decides tools itself may call one whose subject the user never mentioned only
# when it is this sure it wants a call at all (probability of opening one at the first token).
# Measured on Qwen2.5-0.5B with parley serve's tools (bench quality's questions, three sets of
# instructions): wrong calls ("What color is the sky…" → get_current_time) opened at 0.27-0.74;
# "What is two plus two?" → calculate, unmentioned but right, at 0.81-0.88.
SURE_CALL = 0.75


@dataclass
class _Plan:
    """What one request turns into: a prompt and how to generate after it."""

    prompt: str
    tools: list[ToolSpec]
    forced: ToolSpec | None  # mode "function"
    required: bool  # mode "required": must call one of ``tools``
    auto_tools: bool  # mode "auto" with tools: watch for <tool_call>
    max_tokens: int
    question: str = ""  # the latest user message: what an unprompted call must be about
    key: str | None = None  # the session's prompt-cache key: where its state goes while it gives way
    answers_result: bool = False  # the last message is a tool's result: the reply puts it in words
    system: str = ""  # the system text (preamble, instructions): with ``tools``, what a reply must not recite


class _RepeatPenalty:
    """llama.cpp's repeat penalty over the reply's own recent tokens, as a logits processor.

    llama.cpp keeps that history inside its sampler, which starts empty at every ``generate``
    call, so a reply that gave way and carried on would forget what it had said and could go
    another way; here the history is the reply's, and survives the pause.
    """

    def __init__(self, generated: list[int], penalty: float = REPEAT_PENALTY, window: int = 64) -> None:
        self.generated = generated
        self.penalty = penalty
        self.window = window

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if not self.generated:
            return scores
        seen = np.unique(np.asarray(self.generated[-self.window :]))
        picked = scores[seen]
        scores[seen] = np.where(picked > 0, picked / self.penalty, picked * self.penalty)
        return scores


class _NoMarkup:
    """Logits processor: no token that opens JSON, a tag or code ('{', '<', '`') after the first.

    For replies in words only: nothing of that kind is ever meant to be spoken, and a model that
    was refused a call wrote one out as text instead ('Here's a response: {"name": …').
    """

    def __init__(self, markup: np.ndarray) -> None:
        self.markup = markup

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        scores[self.markup] = -np.inf
        return scores


class _FirstStep:
    """Logits processor for a reply's first token: measures (and may forbid) opening a tool call."""

    def __init__(self, opens_call: np.ndarray, *, forbid: bool = False) -> None:
        self.opens_call = opens_call
        self.forbid = forbid
        self.p_call = 0.0
        self._seen = False

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if self._seen:
            return scores
        self._seen = True
        shifted = np.exp(scores.astype(np.float64) - float(scores.max()))
        self.p_call = float(shifted[self.opens_call].sum() / shifted.sum())
        if self.forbid:
            scores = scores.copy()
            scores[self.opens_call] = -np.inf
        return scores


_DONE = object()
# Qwen2.5-Coder-1.5B opens some calls with a doubled brace ('{{"name": "clearnotes", …}}}'),
# which went out as spoken text before it was recognised here.
_CALL_OPENINGS = (TOOL_CALL_OPEN, '{"name"', '{{"name"')
_CALL_PREFIX = TOOL_CALL_OPEN + '{"name": '
_NAME = re.compile(r'\{\s*"name"\s*:\s*"([^"]{0,64})"')


def _named_tool(name: str, tools: list[ToolSpec]) -> ToolSpec | None:
    """The tool the model named, if it is a real one (else the grammar chooses among the real ones)."""
    return next((t for t in tools if t.name == name), None)


def _compact_tool(tool: ToolSpec) -> dict[str, Any]:
    """The tool as the template renders it, without schema noise that costs prompt tokens."""
    params = json.loads(json.dumps(tool.parameters or {"type": "object", "properties": {}}))
    if not params.get("required"):
        params.pop("required", None)
    params.pop("additionalProperties", None)
    return {"name": tool.name, "description": tool.description or "", "parameters": params}


class LlamaLLM:
    """:class:`~parley.engine.models.base.LanguageModel` backed by llama.cpp."""

    name = "llama"
    # Read by the session (tool_router): when False, "auto" is routed explicitly
    # rather than trusting a tiny model (SmolLM2-135M) to decide. Models trained
    # for function calling (Qwen2.5) decide themselves: the prompt carries the
    # tools in the model's own template and the reply is watched for a call.
    decides_tools = False

    def __init__(
        self,
        model_path: Path,
        *,
        n_threads: int = 2,
        n_ctx: int = 2048,
        system_preamble: str = VOICE_PREAMBLE,
        few_shot: tuple[tuple[str, str], ...] = FEW_SHOT,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        decides_tools: bool = False,
    ) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.model_path = Path(model_path)
        self._llm = Llama(
            str(self.model_path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            n_batch=512,
            verbose=False,
        )
        self.n_ctx = n_ctx
        self.system_preamble = system_preamble
        self.few_shot = few_shot
        self.max_tokens = max_tokens
        self.decides_tools = decides_tools
        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError(f"{self.model_path} has no chat template")
        # A template that renders a ``tools`` list (Qwen2.5's does) describes them the way the
        # model was trained on; others get Parley's own short description in the system text.
        self._native_tools = decides_tools and "tools" in template
        eos_id, bos_id = self._llm.token_eos(), self._llm.token_bos()
        self._eos = eos_id
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=self._llm.detokenize([eos_id], special=True).decode(errors="ignore"),
            bos_token=self._llm.detokenize([bos_id], special=True).decode(errors="ignore")
            if bos_id >= 0
            else "",
        )
        import llama_cpp

        self._is_eog = llama_cpp.llama_vocab_is_eog
        self._vocab = self._llm._model.vocab
        self._openers: np.ndarray | None = None  # see _call_openers
        self._markup: np.ndarray | None = None  # see _spoken_markup
        # One context, so one evaluation at a time; a reply past its first clause gives way to
        # another session waiting for its first token (see model_turns), a prefill to anyone.
        self._lock = ModelTurns()
        self._prefill_generation: dict[str | None, int] = {}  # by session: the newest prefill wins
        self._states = PromptStates(self._llm)
        self.prefilled_tokens = 0  # evaluated by prefill, all sessions together (tests read it)
        self._ended: deque[str] = deque()  # sessions over, for the next holder of the model (forget)
        self._grammars: dict[str, str] = {}
        self._grammar = GrammarDecoder(self._llm)
        self._prefill_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-prefill")
        self._prefill_executor.submit(lambda: None).result()  # its thread from the start

    # -- LanguageModel -------------------------------------------------------------

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ChatChunk, None]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def emit(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # loop closed: nobody is listening any more
                stop.set()

        def work() -> None:
            try:
                for chunk in self.generate_sync(request, stop):
                    emit(chunk)
            except BaseException as exc:  # handed to the consumer, raised there
                emit(exc)
            finally:
                emit(_DONE)

        threading.Thread(target=work, name="llama-generate", daemon=True).start()
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()  # closed or cancelled: the worker stops after the current token

    # -- synchronous core (worker thread) ------------------------------------------

    def generate_sync(self, request: ChatRequest, stop: threading.Event | None = None) -> Iterator[ChatChunk]:
        """Blocking generator of the reply's chunks; used by :meth:`stream` and warm-up."""
        stop = stop or threading.Event()
        self._lock.acquire()
        try:
            self._settle()
            if stop.is_set():
                return
            plan = self._plan(request)
            tokens = self._tokenize(plan.prompt)
            self._states.restore_for(request.cache_key, tokens)
            counts = {"in": len(tokens), "out": 0}
            if plan.forced is not None:
                yield from self._tool_call(plan, plan.prompt, [plan.forced], stop, counts)
            elif plan.required:
                yield from self._tool_call(plan, plan.prompt, plan.tools, stop, counts)
            else:
                yield from self._text(plan, tokens, stop, counts)
        finally:
            try:
                self._states.save(request.cache_key)
            finally:
                self._lock.release()

    # -- prompt prefill ----------------------------------------------------------------

    async def prefill(self, request: ChatRequest) -> int:
        """Evaluate ``request``'s prompt now (while the user is still speaking), keep it by session.

        Returns how many prompt tokens are evaluated. Gives way to any generation that wants
        the model, within one small step; what was done is kept and the next prefill resumes.
        """
        # On a thread of its own: a prefill waits there for the model, and in asyncio's default
        # executor waiting prefills took the workers that end-of-turn decisions need.
        return await asyncio.get_running_loop().run_in_executor(
            self._prefill_executor, self.prefill_sync, request
        )

    def prefill_sync(self, request: ChatRequest) -> int:
        key = request.cache_key
        # A newer prefill of the same session (its prompt changed again) makes this one moot:
        # a session.update right after connecting must not cost two full prompt evaluations.
        generation = self._prefill_generation[key] = self._prefill_generation.get(key, 0) + 1

        def current() -> bool:
            return self._prefill_generation.get(key) == generation

        self._lock.acquire(background=True)
        try:
            self._settle()
            if not current():
                return 0
            plan = self._plan(request)
            tokens = self._tokenize(plan.prompt)
            pos = self._states.restore_for(key, tokens)
            self._llm.n_tokens = pos  # drop whatever followed the common prefix
            last = len(tokens) - 1  # the final token is evaluated by the turn itself (fresh logits)
            while pos < last and current():
                if self._lock.waiting:  # a reply wants the model: it goes first, then we go on
                    self._states.save(key)
                    self._lock.give_way(background=True)
                    self._settle()
                    if not current():
                        return pos
                    pos = self._states.restore_for(key, tokens)
                    self._llm.n_tokens = pos
                    continue
                PRIORITY.yield_to_urgent()
                step = tokens[pos : min(last, pos + PREFILL_STEP)]
                self._llm.eval(step)
                pos += len(step)
                self.prefilled_tokens += len(step)
            self._states.save(key)
            return pos
        finally:
            self._lock.release()

    def forget(self, key: str) -> None:
        """The session has ended: its saved prompt state becomes a donor (see llama_prompt_cache).

        Called from the event loop, so it never waits for the model: whoever holds the model
        next does the bookkeeping.
        """
        self._prefill_generation.pop(key, None)  # an unfinished prefill of it stops
        self._ended.append(key)

    def _settle(self) -> None:
        """With the model held: apply the ends of sessions reported since."""
        while self._ended:
            self._states.forget(self._ended.popleft())

    def warmup(self) -> None:
        # A full-length chat turn: a 4-token warm-up leaves the first real
        # question slow (≈330 ms TTFT, 7 tok/s measured), a real turn does not.
        # With the engine's default instructions, so the first session's prompt
        # prefix (preamble + instructions + few-shot) is already in the KV cache.
        from parley.protocol.session_config import DEFAULT_INSTRUCTIONS

        if self.decides_tools:
            self._call_openers()  # 0.35 s over Qwen's 151k tokens: not inside the first turn
            self._spoken_markup()

        request = ChatRequest(
            messages=[
                ChatMessage("system", DEFAULT_INSTRUCTIONS),
                ChatMessage("user", "What is the capital of France? Tell me about it in two sentences."),
            ],
            max_tokens=48,
        )
        for _ in self.generate_sync(request):
            pass

    # -- prompt ------------------------------------------------------------------------

    def _plan(self, request: ChatRequest) -> _Plan:
        choice = request.tool_choice
        tools = list(request.tools) if choice.mode != "none" else []
        answer_result = (
            choice.mode == "auto" and bool(request.messages) and request.messages[-1].role == "tool"
        )
        forced = None
        if choice.mode == "function":
            forced = next((t for t in request.tools if t.name == choice.name), None)
            if forced is None:
                raise ValueError(f"tool_choice names unknown function {choice.name!r}")
            tools = [forced]
        required = choice.mode == "required" and bool(tools)
        # Right after a result a small local model tends to call the same tool again and loop:
        # it answers the result in words. The tools stay in the prompt (same prefix, and the
        # model reads its own call in context) but a call is not watched for.
        auto_tools = choice.mode == "auto" and bool(tools) and not answer_result
        max_tokens = request.max_tokens or self.max_tokens
        if forced or required:
            max_tokens = max(max_tokens, TOOL_MAX_TOKENS)
        prompt, system = self._fit(
            request.messages, tools, max_tokens, tool_shot=auto_tools and not self.decides_tools
        )
        question = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        return _Plan(
            prompt,
            tools,
            forced,
            required,
            auto_tools,
            max_tokens,
            question,
            request.cache_key,
            answer_result,
            system,
        )

    def _render(
        self,
        system: str,
        shots: tuple[tuple[str, str], ...],
        messages: list[dict[str, Any]],
        tools: list[ToolSpec] = (),  # type: ignore[assignment]
    ) -> str:
        head: list[dict[str, Any]] = [{"role": "system", "content": system}]
        head += [{"role": r, "content": c} for r, c in shots]
        if self._native_tools and tools:
            native = [{"type": "function", "function": _compact_tool(t)} for t in tools]
            return self._formatter(messages=head + messages, tools=native).prompt
        return self._formatter(messages=head + messages).prompt

    def _fit(
        self, messages: list[ChatMessage], tools: list[ToolSpec], max_tokens: int, *, tool_shot: bool
    ) -> tuple[str, str]:
        """Render the prompt, dropping the oldest turns (then the few-shot) until it fits.

        Returns the prompt and its system text."""
        system_parts = [self.system_preamble]
        system_parts += [m.content for m in messages if m.role == "system" and m.content.strip()]
        if tools and not self._native_tools:
            system_parts.append(describe_tools(tools))
        system = "\n\n".join(system_parts)
        convo = _to_chat((m for m in messages if m.role != "system"), native=self._native_tools)
        budget = self.n_ctx - min(max_tokens, self.n_ctx // 2) - _SAFETY_TOKENS
        shots = self.few_shot + (TOOL_SHOT if tool_shot else ())
        while True:
            prompt = self._render(system, shots, convo, tools)
            if len(self._tokenize(prompt)) <= budget:
                return prompt, system
            if len(convo) > 1:
                convo = convo[1:]
            elif shots:
                shots = ()
            else:
                raise ValueError(f"prompt does not fit the {self.n_ctx}-token context")

    def _tokenize(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode(), add_bos=False, special=True)

    # -- generation ----------------------------------------------------------------------

    def _tokens(
        self,
        tokens: list[int],
        stop: threading.Event,
        counts: dict[str, int],
        limit: int,
        first: _FirstStep | None = None,
        key: str | None = None,
        extra: Any = None,
    ) -> Iterator[str]:
        """Decoded text per generated token; sets counts['reason'].

        Past its first clause, the reply gives way to anyone waiting for the model between two
        tokens: its state is saved under ``key``, and put back when it carries on.
        """
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        produced = 0
        counts["reason"] = "stop"  # type: ignore[assignment]
        context = list(tokens)
        generated: list[int] = []
        processors = [p for p in (first, _RepeatPenalty(generated), extra) if p is not None]
        while True:
            tokens_in = self._llm.generate(
                context,
                temp=0.0,
                top_k=1,
                repeat_penalty=1.0,  # applied by _RepeatPenalty, whose history survives giving way
                reset=True,  # a prefix of ``context`` already evaluated is kept, not redone
                logits_processor=processors,  # type: ignore[arg-type]
            )
            for token in tokens_in:
                if stop.is_set():
                    return
                PRIORITY.yield_to_urgent()  # let the first clause's speech synthesis have the cores
                if token == self._eos or self._is_eog(self._vocab, token):
                    text = decoder.decode(b"", final=True)
                    if text:
                        yield text
                    return
                produced += 1
                counts["out"] += 1
                context.append(token)
                generated.append(token)
                text = decoder.decode(self._llm.detokenize([token]))
                if text:
                    yield text
                if produced >= limit:
                    counts["reason"] = "length"  # type: ignore[assignment]
                    return
                if key is not None and produced >= GIVE_WAY_AFTER_TOKENS and self._lock.waiting:
                    break
            else:
                return
            tokens_in.close()
            self._states.save(key)
            if self._lock.give_way():
                self._states.restore_for(key, context)

    def _constrained(
        self, prompt: str, gbnf: str, stop: threading.Event, counts: dict[str, Any], limit: int
    ) -> Iterator[str]:
        """Decoded text per grammar-constrained greedy token (no repeat penalty: JSON repeats by design)."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for token in self._grammar.tokens(self._tokenize(prompt), gbnf, stop.is_set, limit):
            counts["out"] += 1
            text = decoder.decode(self._llm.detokenize([token]))
            if text:
                yield text
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail

    def _text(
        self, plan: _Plan, tokens: list[int], stop: threading.Event, counts: dict[str, Any]
    ) -> Iterator[ChatChunk]:
        if plan.answers_result and self.decides_tools:
            # Put the result in words: JSON or a call spoken aloud is never the answer (Qwen2.5
            # otherwise opened some replies to a result with '{"name": …' again).
            yield from self._words_only(plan, tokens, stop, counts)
            return
        pending = ""  # auto mode: held back while it could still become "<tool_call>"
        guard = self._recital_guard(plan, hold_words=0)  # streamed at once: caught six words in
        deciding = plan.auto_tools
        first = _FirstStep(self._call_openers()) if deciding and self.decides_tools else None
        for text in self._tokens(tokens, stop, counts, plan.max_tokens, first, plan.key):
            if deciding:
                pending += text
                head = pending.lstrip()
                # Qwen2.5-Coder answers a call with bare JSON, others with the tag first.
                if head.startswith(_CALL_OPENINGS):
                    meant = _NAME.search(head)
                    if meant is None and len(head) < 80:
                        continue  # let the model say which tool it means
                    chosen = _named_tool(meant.group(1), plan.tools) if meant else None
                    among = plan.tools
                    if first is not None:  # the model decides tools itself: check its decision
                        among = self._call_candidates(plan, chosen, first.p_call)
                        if not among:
                            log.debug(
                                "llama: call to %s turned down (p_call %.2f); answering in words",
                                meant and meant.group(1),
                                first.p_call,
                            )
                            yield from self._words_only(plan, tokens, stop, counts)
                            return
                        chosen = among[0] if len(among) == 1 else None
                        if chosen is not None and not mentions(plan.question, chosen):
                            # Unasked for: the call stands only if it works with the user's numbers.
                            call = list(
                                self._tool_call(plan, plan.prompt, among, stop, counts, chosen=chosen)
                            )
                            arguments = "".join(c.arguments for c in call if isinstance(c, ToolCallDelta))
                            if grounded(arguments, plan.question):
                                yield from call
                            else:
                                log.debug("llama: unasked call %s%s turned down", chosen.name, arguments)
                                yield from self._words_only(plan, tokens, stop, counts)
                            return
                    log.debug("llama: model chose a tool call (%s)", meant and meant.group(1))
                    yield from self._tool_call(plan, plan.prompt, among, stop, counts, chosen=chosen)
                    return
                if head and any(o.startswith(head) for o in _CALL_OPENINGS):
                    continue  # still ambiguous
                deciding = False
                text, pending = pending, ""
            if text and (said := guard.push(text)):
                yield TextDelta(said)
            if guard.recited:
                log.info("llama: the reply began to recite its prompt; ended there")
                counts["reason"] = "stop"
                break
        if stop.is_set():
            return
        if pending and not guard.recited:
            yield TextDelta(pending)
        yield Finish(counts["reason"], counts["in"], counts["out"])

    @staticmethod
    def _call_candidates(plan: _Plan, chosen: ToolSpec | None, p_call: float) -> list[ToolSpec]:
        """The tools a call the model opened by itself may go to; none means: answer in words.

        A real tool stands if the user spoke of it or the model was sure it wanted a call. A
        made-up name ("readnotes") goes, by grammar, to one of the tools the user spoke of
        (list_notes for "Read me my notes."); with none ("How many legs does a spider have?" →
        ``{"name": "spider"``) there is no call: the grammar over every tool had turned that one
        into get_current_time.
        """
        if chosen is not None:
            return [chosen] if p_call >= SURE_CALL or mentions(plan.question, chosen) else []
        return [t for t in plan.tools if mentions(plan.question, t)]

    def _words_only(
        self, plan: _Plan, tokens: list[int], stop: threading.Event, counts: dict[str, Any]
    ) -> Iterator[ChatChunk]:
        """The reply again from its first token, where opening a call is forbidden (the prompt's
        evaluation is reused: same tokens).

        This is where a small model that wanted a call answers instead, and where it sometimes
        recites its prompt: the reply ends where that starts, and its first words are held back
        until they are its own (see :mod:`recital`).
        """
        counts["out"] = 0
        forbid = _FirstStep(self._call_openers(), forbid=True)
        # The replies that recited from their first word answered statements whose call was refused
        # ("It's raining here."); those are held back until they are their own. A refused question
        # ("Which ocean is the largest and where is it?") was answered well, and holding its reply
        # back cost its first turn ~200 ms; nor is a reply to a tool's result held.
        statement = not plan.question.rstrip().endswith("?")
        hold = HOLD_WORDS if statement and not plan.answers_result else 0
        guard = self._recital_guard(plan, hold_words=hold)
        no_markup = _NoMarkup(self._spoken_markup())
        for text in self._tokens(tokens, stop, counts, plan.max_tokens, forbid, plan.key, extra=no_markup):
            if said := guard.push(text):
                yield TextDelta(said)
            if guard.recited:
                log.info("llama: the reply began to recite its prompt; ended there")
                break
        if stop.is_set():
            return
        if rest := guard.flush():
            yield TextDelta(rest)
        yield Finish("stop" if guard.recited else counts["reason"], counts["in"], counts["out"])

    def _recital_guard(self, plan: _Plan, hold_words: int) -> RecitalGuard:
        """A guard over the prompt's system block: its instructions and the tools as rendered."""
        head = self._render(plan.system, (), [], plan.tools)
        return RecitalGuard(head, hold_words=hold_words, names=tuple(t.name for t in plan.tools))

    def _spoken_markup(self) -> np.ndarray:
        """Mask over the vocabulary: the call openers, less the tokens that end a reply
        ('<|im_end|>' starts with '<' too, and a reply in words must still be able to end)."""
        if self._markup is None:
            ends = np.array([bool(self._is_eog(self._vocab, t)) for t in range(self._llm.n_vocab())])
            self._markup = self._call_openers() & ~ends
        return self._markup

    def _call_openers(self) -> np.ndarray:
        """Mask over the vocabulary: tokens that start a call, a tag or a code block ('{', '<', '`')."""
        if self._openers is None:
            mask = np.zeros(self._llm.n_vocab(), dtype=bool)
            for token in range(len(mask)):
                piece = self._llm.detokenize([token], special=True).lstrip()
                mask[token] = piece.startswith((b"{", b"`", b"<"))  # '<' also covers <tool_call>
            self._openers = mask
        return self._openers

    def _tool_call(
        self,
        plan: _Plan,
        prompt: str,
        tools: list[ToolSpec],
        stop: threading.Event,
        counts: dict[str, Any],
        *,
        chosen: ToolSpec | None = None,
    ) -> Iterator[ChatChunk]:
        """Choose the tool (grammar over names) then stream its grammar-constrained arguments."""
        # The call is written the way the model itself writes one: Qwen2.5 as bare JSON (with the
        # tag, its grammar-constrained choice of name was wrong 4 times in 6), others after the tag.
        prefix = prompt + ('{"name": "' if self._native_tools else _CALL_PREFIX + '"')
        if chosen is not None:
            tool = chosen
        elif len(tools) == 1:
            tool = tools[0]
        else:
            names = "".join(self._constrained(prefix, self._names_grammar(tools), stop, counts, 64))
            if stop.is_set():
                return
            tool = next(t for t in tools if t.name == names.removesuffix('"'))
        yield ToolCallDelta(index=0, call_id=new_call_id(), name=tool.name)
        args_prompt = prefix + tool.name + '", "arguments": '
        held = ""  # trailing whitespace the grammar allows after the closing brace
        for text in self._constrained(args_prompt, self._args_grammar(tool), stop, counts, TOOL_MAX_TOKENS):
            text = held + text
            body = text.rstrip()
            held = text[len(body) :]
            if body:
                yield ToolCallDelta(index=0, arguments=body)
        if stop.is_set():
            return
        yield Finish("tool_calls", counts["in"], counts["out"])

    def _names_grammar(self, tools: list[ToolSpec]) -> str:
        """GBNF: exactly one of the tool names and the closing quote (the opening one is in the prompt)."""
        return "root ::= " + " | ".join(json.dumps(t.name + '"') for t in tools)

    def _args_grammar(self, tool: ToolSpec) -> str:
        """GBNF for the tool's (length-capped) JSON Schema; cached per schema."""
        from llama_cpp.llama_grammar import json_schema_to_gbnf

        schema = json.dumps(bounded_schema(tool.parameters), sort_keys=True)
        if schema not in self._grammars:
            self._grammars[schema] = json_schema_to_gbnf(schema)
        return self._grammars[schema]


def _to_chat(messages: Iterator[ChatMessage] | Any, *, native: bool = False) -> list[dict[str, Any]]:
    """Conversation → template messages. Tool calls and results become text the model can read.

    ``native`` (a model that decides tools itself, Qwen2.5): its own call is left out and the
    result is handed over as a system note. In the template's own ``<tool_call>``/
    ``<tool_response>`` form the 0.5B model answered a result with more JSON ('{"name":
    "calculate", …} {"result": 4}'). As the user's note with the question repeated, it read the
    question back ("Read me my notes." → "Read me my notes.", "Can you calculate 17 times 23?" →
    "Sure, I can calculate 17 times 23."); the 0.5B model repeats whatever the last user turn
    says. As a system note it says "The result of the calculate tool is 391."
    """
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for m in messages:
        if m.role == "assistant":
            for call in m.tool_calls:
                names[call.id] = call.name
            if native and m.tool_calls:
                if m.content:
                    out.append({"role": "assistant", "content": m.content})
                continue
            parts = [m.content] if m.content else []
            for call in m.tool_calls:
                try:
                    args: Any = json.loads(call.arguments or "{}")
                except ValueError:
                    args = call.arguments
                parts.append(
                    TOOL_CALL_OPEN + json.dumps({"name": call.name, "arguments": args}) + TOOL_CALL_CLOSE
                )
            out.append({"role": "assistant", "content": "\n".join(parts)})
        elif m.role == "tool":
            name = names.get(m.tool_call_id or "", "the tool")
            if native:
                out.append({"role": "system", "content": result_note(name, m.content)})
            else:
                out.append({"role": "user", "content": f"Result of {name}: {m.content}"})
        else:
            out.append({"role": m.role, "content": m.content})
    return out
