"""Whisper base through CTranslate2, tuned for turn latency.

faster-whisper pads every input to 30 s, so the encoder costs the same
~0.5–1.3 s for "yes" as for a long sentence. Here the log-mel features cover
only the audio we have plus a little silence, and ``Whisper.generate`` is
called directly: 3–6× faster on 1–8 s turns.

Short encoder windows make Whisper loop ("Yes. Yes. Yes."), so the fast path
decodes *with timestamps* and is guarded (measured on Piper and espeak voices,
see tests/models/test_stt.py):

* the window is at least ``_MIN_WINDOW_S`` long (tiny windows loop most);
* ``max_length`` is capped in proportion to the audio duration;
* segments that start after the audio ends, or repeat the previous segment,
  are dropped;
* if decoding still hit the length cap or the text is highly repetitive
  (gzip ratio, as in Whisper), the turn is re-run on the standard 30 s path.

Audio longer than 30 s goes through faster-whisper's normal chunked path.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from parley.engine.models.base import Transcript
from parley.engine.models.memory import release_freed_memory

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
_PAD_S = 2.0  # silence after the speech; less than ~2 s loops more often
# 1-word clips decoded in a 3 s window repeat themselves ("Say that again. Say that again…"). At
# 5 s, 22 Piper phrases of 1-14 words were all right, as at 8 s, clean and at 20 dB SNR (one slip
# each way over two noise draws), and a 2-3 s question took 163 ms instead of 239 (the encoder's
# cost follows the window).
_MIN_WINDOW_S = 5.0
_MAX_FAST_S = 30.0
_TOKENS_PER_S = 8.0  # fast speech is ~4 tokens/s; the cap only stops loops
_MIN_AUDIO_S = 0.12
_TRIM_AFTER_S = 8.0
_SILENCE_PEAK = 10 ** (-50 / 20)  # below -50 dBFS there is nothing to transcribe
_NO_SPEECH_PROB = 0.6  # Whisper's own threshold for a silent window
_COMPRESSION_RATIO = 2.4
_PROMPT_TOKENS = 223  # Whisper's limit on the previous-text prompt (n_ctx // 2 - 1)


class WhisperSTT:
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        model_dir: Path,
        *,
        language: str | None = "en",
        threads: int = 2,
        compute_type: str = "int8",
    ) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        self.model_dir = Path(model_dir)
        self.language = language
        # num_workers=1: one transcription at a time; intra-op threads do the work.
        self._wm = WhisperModel(
            str(self.model_dir), device="cpu", compute_type=compute_type, cpu_threads=threads, num_workers=1
        )
        self._ct2 = self._wm.model
        self._features = self._wm.feature_extractor
        self._hf_tokenizer = self._wm.hf_tokenizer
        self._tokenizer_cls = Tokenizer
        self._tokenizers: dict[str | None, object] = {}
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whisper")
        # How often the short window looped and the 30 s path had to re-run a turn.
        self.fast_runs = 0
        self.fallback_runs = 0

    # -- public ---------------------------------------------------------------------

    async def transcribe(
        self,
        audio: np.ndarray,
        *,
        language: str | None = None,
        prompt: str | None = None,
        languages: Sequence[str] | None = None,
    ) -> Transcript:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self.transcribe_sync, audio, language, prompt, languages
        )

    def transcribe_sync(
        self,
        audio: np.ndarray,
        language: str | None = None,
        prompt: str | None = None,
        languages: Sequence[str] | None = None,
    ) -> Transcript:
        """Blocking version of :meth:`transcribe` (``language`` None = the configured default,
        unless ``languages`` asks for detection among several)."""
        started = time.perf_counter()
        allowed = [code for code in languages or () if code]
        if language is None and len(allowed) == 1:
            language = allowed[0]
        elif language is None and not allowed:
            language = self.language
        audio = np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)
        seconds = len(audio) / SAMPLE_RATE
        text, lang = "", language
        if seconds >= _MIN_AUDIO_S and float(np.max(np.abs(audio))) >= _SILENCE_PEAK:
            with self._lock:
                if language is None and allowed:
                    language = lang = self._detect_language(audio, allowed)
                if seconds > _MAX_FAST_S:
                    text, lang = self._slow(audio, language, prompt)
                else:
                    text, lang = self._fast(audio, language, prompt)
        if seconds > _TRIM_AFTER_S:
            release_freed_memory()  # long windows leave ~100-250 MB of freed buffers behind
        return Transcript(
            text=text, language=lang, audio_seconds=seconds, elapsed_seconds=time.perf_counter() - started
        )

    def warmup(self) -> None:
        # Speech-like noise bursts so both the encoder and a few decoder steps run.
        rng = np.random.default_rng(0)
        t = np.arange(int(1.5 * SAMPLE_RATE)) / SAMPLE_RATE
        audio = (0.1 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
        audio += 0.01 * rng.standard_normal(len(audio)).astype(np.float32)
        self.transcribe_sync(audio)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- decoding -------------------------------------------------------------------

    def _tokenizer(self, language: str | None):  # -> faster_whisper.tokenizer.Tokenizer
        tok = self._tokenizers.get(language)
        if tok is None:
            tok = self._tokenizer_cls(self._hf_tokenizer, True, task="transcribe", language=language or "en")
            self._tokenizers[language] = tok
        return tok

    def _prompt(self, tok, prompt: str | None, timestamps: bool) -> list[int]:
        tokens: list[int] = []
        if prompt:
            prev = tok.encode(" " + prompt.strip())[-_PROMPT_TOKENS:]
            tokens = [tok.sot_prev, *prev]
        tokens += [tok.sot, tok.language, tok.transcribe]
        if not timestamps:
            tokens.append(tok.no_timestamps)
        return tokens

    def _detect_language(self, audio: np.ndarray, allowed: Sequence[str] = ()) -> str:
        import ctranslate2

        # Detection on a short window is unreliable (German espeak → "vi"); a
        # full 30 s window costs one more encoder pass, paid only when no
        # language is configured.
        padded = np.zeros(int(_MAX_FAST_S * SAMPLE_RATE), dtype=np.float32)
        padded[: len(audio)] = audio[: len(padded)]
        mel = self._features(padded, padding=0)
        mel = mel[:, : mel.shape[-1] - (mel.shape[-1] % 2)]
        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None]))
        results = self._ct2.detect_language(features)[0]  # every language, most likely first
        codes = [token[2:-2] for token, _prob in results]  # "<|en|>" -> "en"
        if allowed:
            # The most likely of the languages the client allows (Whisper knows ~100).
            wanted = {code.lower() for code in allowed}
            return next((code for code in codes if code in wanted), allowed[0])
        return codes[0]

    @staticmethod
    def window_seconds(seconds: float) -> int:
        """The encoder window of the fast path for ``seconds`` of speech.

        Whole seconds: oneDNN keeps compiled kernels for every input shape it has seen, so a
        window of any length grew RSS by ~70 MB over 300 clips of random length; with whole
        seconds there are at most 23 shapes. The encoder takes at most 30 s.
        """
        return min(math.ceil(max(seconds + _PAD_S, _MIN_WINDOW_S)), int(_MAX_FAST_S))

    def window_features(self, audio: np.ndarray, window: int) -> np.ndarray:
        """Log-mel features of ``audio`` padded with silence to ``window`` seconds."""
        # Pad in the waveform domain so the log-mel normalisation (relative to the
        # clip's max) sees real silence, as in the 30 s windows Whisper was trained on.
        padded = np.zeros(int(window * SAMPLE_RATE), dtype=np.float32)
        padded[: len(audio)] = audio
        mel = self._features(padded, padding=0)
        frames = mel.shape[-1] - (mel.shape[-1] % 2)  # the encoder's conv has stride 2
        return mel[:, :frames]

    def _fast(self, audio: np.ndarray, language: str | None, prompt: str | None) -> tuple[str, str | None]:
        import ctranslate2

        seconds = len(audio) / SAMPLE_RATE
        mel = self.window_features(audio, self.window_seconds(seconds))
        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None]))
        if language is None:
            language = self._detect_language(audio)
        tok = self._tokenizer(language)
        prompt_ids = self._prompt(tok, prompt, timestamps=True)
        max_length = min(len(prompt_ids) + int(_TOKENS_PER_S * seconds) + 16, 448)  # 16: timestamps
        result = self._ct2.generate(
            features,
            [prompt_ids],
            beam_size=1,
            max_length=max_length,
            suppress_blank=True,
            suppress_tokens=[-1],
            return_scores=True,
            return_no_speech_prob=True,
        )[0]
        ids = result.sequences_ids[0]
        n_generated = len(ids)
        avg_logprob = result.scores[0] / max(1, n_generated)
        # Whisper also requires avg_logprob < -1 before dropping, but on noise,
        # hum and clicks it confidently writes "Thank you." / "you" (logprob
        # -0.2…-0.6) while no_speech_prob is 0.76–0.92; real speech, even
        # robotic espeak, measured ≤ 0.27. The VAD already said "speech", so
        # Whisper's no-speech vote alone decides.
        if result.no_speech_prob > _NO_SPEECH_PROB:
            log.debug("whisper: no speech (p=%.2f, logprob %.2f)", result.no_speech_prob, avg_logprob)
            return "", language
        segments, guarded = self._segments(tok, ids, seconds)
        text = " ".join(segments).strip()
        # Stopping at the cap (no EOT) means a loop the guards did not catch.
        hit_cap = n_generated >= max_length - len(prompt_ids) and not guarded
        if hit_cap or _compression_ratio(text) > _COMPRESSION_RATIO:
            log.info("whisper fast path looped (%r); re-running on the 30 s path", text[:80])
            self.fallback_runs += 1
            return self._slow(audio, language, prompt)
        self.fast_runs += 1
        return text, language

    @staticmethod
    def _segments(tok, ids: list[int], seconds: float) -> tuple[list[str], bool]:
        """Texts of the timestamped segments that lie within the audio, and whether a guard cut a loop."""
        begin = tok.timestamp_begin
        segments: list[str] = []
        current: list[int] = []
        start: float | None = None
        for token in ids:  # CT2 leaves the final EOT out of sequences_ids
            if token < begin:
                if token < tok.eot:
                    current.append(token)
                continue
            t = (token - begin) * 0.02
            if start is None:  # a segment opens
                if segments and t >= seconds - 0.1:  # starts after the speech: hallucinated
                    return segments, True
                start = t
                continue
            text = tok.decode(current).strip()  # the segment closes
            current, start = [], None
            if segments and _same(text, segments[-1]) and t > seconds + 0.1:
                # The classic short-window loop: the same words again, "spoken"
                # in the silence after the audio. (A real repeat lies within it.)
                return segments, True
            if text:
                segments.append(text)
        if current:  # cut off by max_length: an unfinished repeat is a loop
            text = tok.decode(current).strip()
            if segments and _same(text, segments[-1]):
                return segments, True
            if text:
                segments.append(text)
        return segments, False

    def _slow(self, audio: np.ndarray, language: str | None, prompt: str | None) -> tuple[str, str | None]:
        segments, info = self._wm.transcribe(
            audio,
            language=language,
            beam_size=1,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
            initial_prompt=prompt,
        )
        return " ".join(s.text.strip() for s in segments).strip(), info.language


def _same(a: str, b: str) -> bool:
    norm = lambda s: "".join(ch for ch in s.lower() if ch.isalnum())  # noqa: E731
    return norm(a) == norm(b)


def _compression_ratio(text: str) -> float:
    if not text:
        return 0.0
    data = text.encode()
    return len(data) / len(zlib.compress(data))
