"""The model stages as ``typing.Protocol``s.

The session only talks to these interfaces, so a backend is swapped by
configuration (Whisper ↔ another STT, llama.cpp ↔ an OpenAI-compatible
server) and unit tests of orchestration can use small fakes.

Conventions shared by every backend:

* CPU-bound backends do their work in worker threads and expose ``async``
  methods, so the event loop never blocks on a model.
* Streaming methods are async generators; closing the generator
  (``aclose()``, or cancelling the task iterating it) must stop the model
  promptly: a barge-in cancels generation mid-token.
* Audio crosses these interfaces as mono numpy arrays with an explicit rate.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

# --- VAD --------------------------------------------------------------------


@runtime_checkable
class VadStream(Protocol):
    """Per-session VAD state (Silero keeps a recurrent state between frames)."""

    def __call__(self, frame: np.ndarray) -> float:
        """Speech probability (0–1) of one float32 frame of ``frame_samples`` samples."""
        ...

    def reset(self) -> None: ...


@runtime_checkable
class VoiceActivityDetector(Protocol):
    sample_rate: int  # e.g. 16000
    frame_samples: int  # e.g. 512 (32 ms)

    def stream(self) -> VadStream:
        """A fresh, independent per-session stream; the model weights are shared."""
        ...


# --- end of turn ------------------------------------------------------------


@runtime_checkable
class EndOfTurnModel(Protocol):
    """Hears whether a speaker who has just paused has finished their turn."""

    sample_rate: int  # e.g. 16000

    async def probability(self, audio: np.ndarray) -> float:
        """P(turn complete) for float32 mono speech at ``sample_rate`` that ends at the pause."""
        ...


# --- STT --------------------------------------------------------------------


@dataclass
class Transcript:
    text: str
    language: str | None = None
    audio_seconds: float = 0.0
    elapsed_seconds: float = 0.0  # wall time spent transcribing


@runtime_checkable
class SpeechToText(Protocol):
    sample_rate: int  # rate the audio must be given at, e.g. 16000

    async def transcribe(
        self,
        audio: np.ndarray,
        *,
        language: str | None = None,
        prompt: str | None = None,
        languages: Sequence[str] | None = None,
    ) -> Transcript:
        """Transcribe float32 mono audio at ``sample_rate``; only the audio given is decoded.

        ``languages`` (with no ``language``): detect the language, choosing only among these;
        ``Transcript.language`` reports the one used.
        """
        ...


# --- LLM --------------------------------------------------------------------


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text


@dataclass
class ChatMessage:
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)  # assistant messages only
    tool_call_id: str | None = None  # tool messages only


@dataclass
class ToolSpec:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass
class ToolChoice:
    mode: Literal["auto", "none", "required", "function"] = "auto"
    name: str | None = None  # set when mode == "function"


@dataclass
class ChatRequest:
    messages: list[ChatMessage]
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    max_tokens: int | None = None  # None = the backend's own cap
    temperature: float | None = None
    # Passed on by backends that have them (chat completions); None = the backend's default.
    parallel_tool_calls: bool | None = None
    reasoning_effort: str | None = None
    # Whose conversation this is (the session id): a backend may keep that conversation's
    # evaluated prompt between requests (see LanguageModel.prefill).
    cache_key: str | None = None


@dataclass
class TextDelta:
    text: str


@dataclass
class ToolCallDelta:
    """A piece of a tool call. The first delta of an ``index`` carries ``call_id`` and ``name``."""

    index: int
    arguments: str = ""
    call_id: str | None = None
    name: str | None = None


@dataclass
class Finish:
    reason: Literal["stop", "length", "tool_calls"]
    input_tokens: int = 0
    output_tokens: int = 0


ChatChunk = TextDelta | ToolCallDelta | Finish


@runtime_checkable
class LanguageModel(Protocol):
    """A chat model."""

    name: str
    # False for small local models: the engine then picks the tool for ``tool_choice: "auto"``.
    decides_tools: bool

    def stream(self, request: ChatRequest) -> AsyncGenerator[ChatChunk, None]:
        """Stream the reply; ends with exactly one :class:`Finish`.

        Raises an exception (any) when the model fails; the caller turns that
        into a failed response.
        """
        ...

    async def prefill(self, request: ChatRequest) -> int:
        """Prepare for a request like this one (same ``cache_key``) before it comes: a local
        model evaluates its prompt now, so the first reply does not wait for it. Returns the
        number of prompt tokens now ready (0 where there is nothing to prepare)."""
        ...

    def forget(self, key: str) -> None:
        """The conversation ``key`` has ended: drop anything kept for it."""
        ...


# --- TTS --------------------------------------------------------------------


@dataclass(frozen=True)
class WordTiming:
    """One spoken word and where it sits in the chunk's audio (seconds from chunk start)."""

    text: str
    start: float
    end: float


@dataclass
class SpeechChunk:
    audio: np.ndarray  # int16 mono
    sample_rate: int
    text: str  # the text this chunk speaks
    words: list[WordTiming] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


@runtime_checkable
class TextToSpeech(Protocol):
    sample_rate: int

    def voices(self) -> list[str]: ...

    def synthesize(
        self, text: str, *, voice: str | None = None, speed: float = 1.0
    ) -> AsyncGenerator[SpeechChunk, None]:
        """Speak ``text``; yields one or more chunks with word timings."""
        ...
