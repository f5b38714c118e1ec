"""Turn detection: Silero probabilities → speech start / stop decisions.

The detector is fed canonical audio as it arrives and returns signals with
absolute sample positions. It never touches the session; the session turns
signals into protocol events. Decisions follow the session's
``turn_detection`` config exactly:

* ``server_vad``: speech starts after ``min_speech_ms`` of frames at or above
  ``threshold`` (the onset is back-dated to the first such frame and padded
  by ``prefix_padding_ms``); it stops after ``silence_duration_ms`` of frames
  below the threshold (with a little hysteresis so a wavering probability
  does not restart the silence clock).
* ``semantic_vad``: the same speech start; the end of turn is decided from
  how and what was said. Early in a pause the detector emits a ``Probe`` (the
  session transcribes the speech so far and starts the reply speculatively),
  then ``Look`` signals at set points of the pause: at each the session asks the
  end-of-turn model (smart-turn, which hears intonation and rhythm) for
  P(turn complete) and calls :meth:`decide` with the transcript: a turn judged
  complete ends after the eagerness' short wait, anything else after its long
  fallback wait. :func:`turn_complete` combines the two: the model decides,
  and a transcript that trails off ("and…", "so um…") vetoes. Without the
  model the transcript alone decides.

For latency, ``server_vad`` also emits a ``Probe`` part-way into the silence
so the session can transcribe (and start answering) speculatively; the work
is discarded if speech resumes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from parley.engine.input_buffer import ms_to_samples
from parley.engine.models.base import VadStream
from parley.protocol.audio_formats import CANONICAL_RATE, Resampler, int16_to_float


@dataclass
class SpeechStarted:
    onset: int  # first speech sample (absolute, 24 kHz)
    start: int  # onset minus prefix padding, clamped to the buffer


@dataclass
class Probe:
    """Silence has lasted ``silence_ms``: a good moment to transcribe speculatively."""

    start: int
    end: int  # absolute index of the last speech sample + trailing silence so far


@dataclass
class Look:
    """semantic_vad: the pause has lasted a set time; judge whether the turn is complete.

    The first look comes ``SEMANTIC_LOOK_MS`` into every pause. Later ones come only
    while the pause is still judged unfinished: the end-of-turn model hears the
    trailing silence too, and a look a second or two in catches many finished turns
    that the first look doubted, long before the fallback wait. Looks do not change
    the pause number.
    """

    start: int
    end: int
    # A transcript that reads as a finished sentence ends the turn when the model gives it at
    # least this (None: the model's threshold alone). Someone still mid-sentence has usually
    # gone on by a later look, so it asks less there: half at low's early look, any at the
    # recheck.
    sentence_suffices_at: float | None = None
    # The first look of the pause: only there may a sure verdict shorten the wait (later looks
    # hear more silence, which alone raises the model's P, and come when a short wait is over).
    first: bool = False


@dataclass
class SpeechResumed:
    """Speech came back before the turn ended: drop speculative work."""


@dataclass
class SpeechStopped:
    start: int
    end: int  # absolute index where the turn is cut (includes trailing silence)


Signal = SpeechStarted | Probe | Look | SpeechResumed | SpeechStopped


@dataclass(frozen=True)
class Eagerness:
    """How one ``eagerness`` setting ends a turn under ``semantic_vad``."""

    threshold: float  # P(complete) from the end-of-turn model at which the turn counts as finished
    min_wait_ms: int  # silence before a finished turn ends
    max_wait_ms: int  # the long fallback: silence before an unfinished-sounding turn ends anyway
    recheck_ms: int  # silence at which a pause judged unfinished is judged once more
    # An extra look before the short wait runs out: the model hears more of the pause. Low's
    # first look at 200 ms doubted compound questions ("Who wrote Romeo and Juliet, and what is
    # the story about?": P = 0.03) that it judged finished a second in (0.91); without it they
    # waited for the look at 2 s.
    early_look_ms: int | None = None
    # A turn the model is sure of (P ≥ ``sure_threshold``) whose transcript reads as a finished
    # sentence ends after ``sure_wait_ms`` instead of ``min_wait_ms``: the reply, started 100 ms
    # into the pause, is ready by then, and such turns are most of them.
    sure_threshold: float | None = None
    sure_wait_ms: int | None = None

    def looks(self) -> tuple[tuple[int, float | None], ...]:
        """(ms into the pause, ``sentence_suffices_at``) of each look, in order."""
        early = () if self.early_look_ms is None else ((self.early_look_ms, EARLY_LOOK_SENTENCE_P),)
        return ((SEMANTIC_LOOK_MS, None), *early, (self.recheck_ms, 0.0))


# A lower threshold answers sooner and risks cutting in; the waits follow the
# OpenAI Realtime description (low waits up to 8 s, high up to 2 s). ``auto`` is ``medium``.
# Thresholds and waits were chosen by `parley bench turn-taking` (figures in the README).
EAGERNESS = {
    "low": Eagerness(
        threshold=0.9,
        min_wait_ms=900,
        max_wait_ms=8000,
        recheck_ms=2000,
        early_look_ms=700,
        sure_threshold=0.98,
        sure_wait_ms=600,
    ),
    "medium": Eagerness(threshold=0.8, min_wait_ms=500, max_wait_ms=4000, recheck_ms=1200),
    "high": Eagerness(threshold=0.5, min_wait_ms=250, max_wait_ms=2000, recheck_ms=800),
}
EAGERNESS["auto"] = EAGERNESS["medium"]
# At low's early look (700 ms) a finished-looking sentence also ends the turn if the model
# gives it even odds: the questions it still doubted then ("…, and where is it?": 0.54 a second
# in) otherwise waited for the look at 2 s. Low's short wait (900 ms) still outlasts the
# 400–800 ms pauses people make inside a clause.
EARLY_LOOK_SENTENCE_P = 0.5
SEMANTIC_MAX_WAIT_MS = {name: e.max_wait_ms for name, e in EAGERNESS.items()}
SEMANTIC_MIN_WAIT_MS = {name: e.min_wait_ms for name, e in EAGERNESS.items()}
# The first model call comes this far into a pause: smart-turn was trained on turns cut by a
# VAD with a ~200 ms stop time, so it expects a little trailing silence. The transcription
# (and the speculative reply) starts sooner, at the session's speculation probe (50 ms):
# Whisper takes ~170 ms, and the reply needs the transcript anyway.
SEMANTIC_LOOK_MS = 200
# How long a decision waits for the transcript once the model has answered. Whisper takes
# ~0.3 s on an idle machine but seconds on a busy one; past this the model decides alone,
# so a slow transcription never pushes a finished turn out to the fallback wait.
SEMANTIC_TRANSCRIPT_WAIT_MS = 600

_TRAILING_WORDS = {
    "and",
    "or",
    "but",
    "so",
    "because",
    "cause",
    "if",
    "then",
    "that",
    "which",
    "who",
    "the",
    "a",
    "an",
    "to",
    "of",
    "for",
    "with",
    "in",
    "on",
    "at",
    "my",
    "your",
    "is",
    "are",
    "was",
    "i",
    "um",
    "uh",
    "er",
    "erm",
    "like",
    "also",
    "plus",
    "when",
    "where",
    "while",
    "about",
    "from",
    "what",
    "how",
    "this",
}


# English questions may end on these ("What is it famous for?", "Where are you from?"):
# with Whisper's question mark after them the thought is finished. Measured: without this,
# "…, and what is it famous for?" waited out semantic_vad low's 8 s fallback every time.
_QUESTION_END_PREPOSITIONS = {"for", "about", "from", "to", "of", "with", "in", "on", "at", "like"}


def _asks_for_an_object(question: str) -> bool:
    """Does the question's last clause open with the word its final preposition governs?

    "…, and what is it famous for?" and "Where are you from?" do; Whisper also puts a question
    mark on speech cut mid-phrase ("How long does it take to drive from?"), which does not.
    """
    clause = re.split(r"[,;.!?]\s+|\s+(?:and|but|or|so)\s+", question.strip().lower())[-1]
    return bool(re.match(r"(?:(?:and|but|or|so)\s+)?(what|who|whom|which|where)\b", clause))


def sounds_finished(text: str) -> bool:
    """A cheap semantic end-of-turn check on a transcript.

    Whisper punctuates: a sentence that ends in ``.``/``?``/``!`` and does not
    stop on a conjunction, article or filler is taken as a finished thought.
    """
    text = text.strip()
    return bool(text) and not trails_off(text) and text[-1] in ".?!"


def trails_off(text: str) -> bool:
    """The transcript stops on a conjunction, article or filler, or on a comma or ellipsis."""
    text = text.strip()
    if not text:
        return False
    if text.endswith(("...", "…", ",", "-", "—")):
        return True
    words = re.findall(r"[A-Za-z']+", text.lower())
    if not words:
        return False
    if text.endswith("?") and words[-1] in _QUESTION_END_PREPOSITIONS and _asks_for_an_object(text):
        return False
    return words[-1] in _TRAILING_WORDS


def turn_complete(
    probability: float | None,
    transcript: str | None,
    threshold: float,
    *,
    sentence_suffices_at: float | None = None,
) -> bool:
    """The semantic end-of-turn decision for one pause.

    ``probability`` is the end-of-turn model's P(complete) (None when no model
    is loaded), ``transcript`` the speech so far (None when transcription
    failed). The model hears what a transcript cannot (a rising or level
    pitch before a pause); the transcript catches the pauses the model misses
    after a word that cannot end an English sentence.

    ``sentence_suffices_at`` (a later look into the pause): a transcript that
    reads as a finished sentence ends the turn when the model gives it at least
    this. Someone still mid-sentence has usually gone on by then: measured on
    Piper speech, "Who wrote Romeo and Juliet? And what is the story about?"
    stayed at P = 0.84 after 2 s and waited out eagerness low's 8 s fallback.
    """
    if probability is None:
        return sounds_finished(transcript or "")
    if transcript is not None and trails_off(transcript):
        return False
    if probability >= threshold:
        return True
    if sentence_suffices_at is None or transcript is None or not sounds_finished(transcript):
        return False
    # A finished question suffices at any later look whatever the model says: smart-turn gives
    # long compound questions in Piper's voice almost nothing ("Which planet is closest to the
    # sun and what is it like?": P = 0.008 at 700 ms, 0.195 at 2 s; `parley bench load`), and
    # they waited for the look at 2 s. A later look comes only when the short wait (900 ms for
    # low) has not run out, so a pause inside a clause still has that long to end.
    return transcript.rstrip().endswith("?") or probability >= sentence_suffices_at


def turn_sure(probability: float | None, transcript: str | None, eagerness: Eagerness) -> bool:
    """The model is sure the turn is complete and the transcript reads as a finished sentence."""
    return (
        eagerness.sure_threshold is not None
        and probability is not None
        and probability >= eagerness.sure_threshold
        and transcript is not None
        and sounds_finished(transcript)
    )


class TurnDetector:
    """Per-session VAD state machine. Feed audio, get signals."""

    def __init__(
        self,
        vad_stream: VadStream,
        vad_rate: int,
        frame_samples: int,
        config: dict[str, Any],
        min_speech_ms: int = 64,
        probe_ms: int = 200,
        position: int = 0,
    ) -> None:
        self.vad = vad_stream
        self.vad_rate = vad_rate
        self.frame = frame_samples
        self.frame_ms = frame_samples * 1000 / vad_rate
        self._resample = Resampler(CANONICAL_RATE, vad_rate, quality="LQ")
        self._pending = np.zeros(0, dtype=np.float32)
        self.position = position  # absolute 24 kHz index of the next sample to arrive
        self._analysed = position  # absolute 24 kHz index up to which frames were scored
        self.min_speech_ms = min_speech_ms
        self.server_probe_ms = probe_ms
        self.configure(config)
        self.speaking = False
        self._run_ms = 0.0  # speech-frame run while idle
        self._run_onset = 0
        self._silence_ms = 0.0
        self._last_speech_end = 0
        self._speech_start = 0
        self._probed = False
        self._looks_done = 0  # of this pause's looks (semantic_vad)
        self.last_probability = 0.0
        self.pause = 0  # counts pauses: a semantic decision names the pause it is about

    def configure(self, config: dict[str, Any]) -> None:
        self.kind = config["type"]
        self.threshold = float(config.get("threshold", 0.5))
        self.prefix_ms = int(config.get("prefix_padding_ms", 300))
        if self.kind == "semantic_vad":
            self.eagerness = EAGERNESS[config.get("eagerness") or "auto"]
            self.max_wait_ms = self.eagerness.max_wait_ms
            self.min_wait_ms = self.eagerness.min_wait_ms
            self.required_silence_ms: float = self.max_wait_ms
            self.probe_ms = min(self.server_probe_ms, SEMANTIC_LOOK_MS)
            self.looks = self.eagerness.looks()
        else:
            self.looks = ()
            self.required_silence_ms = int(config.get("silence_duration_ms", 500))
            # Probe early enough that STT (+ the first clause) is ready when the wait ends.
            self.probe_ms = min(self.server_probe_ms, self.required_silence_ms // 2)

    def set_required_silence(self, ms: float) -> None:
        """Semantic decision for the current pause (cleared when speech resumes)."""
        self.required_silence_ms = ms

    def decide(self, complete: bool, pause: int, *, sure: bool = False) -> bool:
        """Apply a semantic decision made for pause number ``pause``; False when it came too late.

        A decision arrives a model call after its ``Look``; if speech resumed (or the
        turn ended) in the meantime it is about a pause that is over, and is dropped.
        ``sure`` (see :func:`turn_sure`) shortens the wait where the eagerness allows it.
        """
        if not self.speaking or pause != self.pause:
            return False
        wait = self.min_wait_ms if complete else self.max_wait_ms
        if complete and sure and self.eagerness.sure_wait_ms is not None:
            wait = min(wait, self.eagerness.sure_wait_ms)
        self.set_required_silence(wait)
        return True

    def reset(self) -> None:
        """Forget the current utterance (buffer cleared or committed by hand)."""
        self.speaking = False
        self.pause += 1
        self._run_ms = 0.0
        self._silence_ms = 0.0
        self._probed = False
        self.vad.reset()

    def feed(self, pcm: np.ndarray, buffer_start: int) -> list[Signal]:
        self.position += len(pcm)
        resampled = int16_to_float(self._resample(pcm))
        self._pending = np.concatenate([self._pending, resampled]) if len(self._pending) else resampled
        signals: list[Signal] = []
        ratio = CANONICAL_RATE / self.vad_rate
        while len(self._pending) >= self.frame:
            frame, self._pending = self._pending[: self.frame], self._pending[self.frame :]
            frame_start = self._analysed
            self._analysed += round(self.frame * ratio)
            prob = self.vad(frame)
            self.last_probability = prob
            signals.extend(self._step(prob, frame_start, self._analysed, buffer_start))
        return signals

    def _step(self, prob: float, frame_start: int, frame_end: int, buffer_start: int) -> list[Signal]:
        if not self.speaking:
            if prob >= self.threshold:
                if self._run_ms == 0:
                    self._run_onset = frame_start
                self._run_ms += self.frame_ms
                if self._run_ms >= self.min_speech_ms:
                    self.speaking = True
                    self.pause += 1
                    self._silence_ms = 0.0
                    self._probed = False
                    self._last_speech_end = frame_end
                    self._speech_start = max(self._run_onset - ms_to_samples(self.prefix_ms), buffer_start, 0)
                    if self.kind == "semantic_vad":
                        self.required_silence_ms = self.max_wait_ms
                    return [SpeechStarted(onset=self._run_onset, start=self._speech_start)]
            else:
                self._run_ms = 0.0
            return []

        # speaking
        if prob >= max(self.threshold - 0.15, 0.05):
            self._last_speech_end = frame_end
            if self._silence_ms > 0 and prob >= self.threshold:
                resumed = self._probed
                self.pause += 1  # a decision still on its way is about the pause that just ended
                self._silence_ms = 0.0
                self._probed = False
                if self.kind == "semantic_vad":
                    self.required_silence_ms = self.max_wait_ms
                return [SpeechResumed()] if resumed else []
            return []
        self._silence_ms += self.frame_ms
        signals: list[Signal] = []
        if not self._probed and self._silence_ms >= self.probe_ms:
            self._probed = True
            self._looks_done = 0
            self.pause += 1
            signals.append(Probe(start=self._speech_start, end=frame_end))
        if self._looks_done < len(self.looks):
            at_ms, suffices = self.looks[self._looks_done]
            if self._silence_ms >= at_ms:
                self._looks_done += 1
                # Later looks are for a pause still judged unfinished (or not judged yet).
                if self._looks_done == 1 or self.required_silence_ms >= self.max_wait_ms:
                    signals.append(
                        Look(
                            start=self._speech_start,
                            end=frame_end,
                            sentence_suffices_at=suffices,
                            first=self._looks_done == 1,
                        )
                    )
        if self._silence_ms >= self.required_silence_ms:
            self.speaking = False
            self._run_ms = 0.0
            self._silence_ms = 0.0
            signals.append(SpeechStopped(start=self._speech_start, end=frame_end))
        return signals
