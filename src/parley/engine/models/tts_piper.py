"""Piper TTS (joe-medium voice) with exact word timings.

Word timings matter: when the user barges in, the session cuts the
assistant's transcript at the last word actually played. Piper's VITS model
computes every phoneme id's duration (frames of ``hop_length`` samples)
before generating audio; the voice loaded here exposes that tensor as an
extra output (see :mod:`parley.engine.models.assets`), so each phoneme's
sample span is known exactly. Phonemes are then mapped to the text's words
(see :mod:`parley.engine.models.word_align`). If the durations are not
available the chunk's voiced span is shared out by phoneme counts instead.

Synthesis runs in one worker thread, one chunk ahead of the consumer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from parley.engine.models.base import SpeechChunk, WordTiming
from parley.engine.models.memory import release_freed_memory
from parley.engine.models.word_align import align_words, proportional_timings

log = logging.getLogger(__name__)

VOICE_NAME = "joe"
_PUNCT = set(",.!?;:")
# Sentence ends, then clause breaks inside long sentences: smaller chunks give
# earlier first audio and finer barge-in granularity.
# A sentence ends at . ! ? … when the next word starts like a sentence does
# (so "the U.S.A. office" stays together).
_SENTENCE_RE = re.compile(r"(?<=[.!?…])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_CLAUSE_RE = re.compile(r"(?<=[,;:—])\s+")
# Titles and abbreviations whose period does not end a sentence ("Dr. Smith").
_ABBREVIATIONS = {
    "mr.",
    "mrs.",
    "ms.",
    "dr.",
    "prof.",
    "st.",
    "jr.",
    "sr.",
    "mt.",
    "vs.",
    "no.",
    "fig.",
    "approx.",
}
_MIN_CLAUSE_WORDS = 3
# VITS holds every intermediate tensor of a chunk at once: a 60-word sentence
# (~15 s of audio) took ~+300 MB of RSS that onnxruntime's arena then keeps.
# Longer runs are cut at word boundaries into near-equal parts.
_MAX_CHUNK_WORDS = 20


def split_chunks(text: str) -> list[str]:
    """Sentences, and clauses of long sentences when both sides have a few words."""
    chunks: list[str] = []
    sentences: list[str] = []
    for part in _SENTENCE_RE.split(text.strip()):
        last = sentences[-1].split()[-1].lower() if sentences and sentences[-1].split() else ""
        if last in _ABBREVIATIONS or re.fullmatch(r"[a-z]\.", last):  # a title or an initial
            sentences[-1] = f"{sentences[-1]} {part}"
        else:
            sentences.append(part)
    for sentence in sentences:
        sentence = sentence.strip()
        if not sentence:
            continue
        current = ""
        for clause in _CLAUSE_RE.split(sentence):
            current = f"{current} {clause}".strip() if current else clause
            if len(current.split()) >= _MIN_CLAUSE_WORDS:
                chunks.append(current)
                current = ""
        if current:
            if chunks and len(current.split()) < _MIN_CLAUSE_WORDS and not _ends_sentence(chunks[-1]):
                chunks[-1] = f"{chunks[-1]} {current}"  # a short tail joins its clause
            else:
                chunks.append(current)
    out: list[str] = []
    for chunk in chunks:
        if any(ch.isalnum() for ch in chunk):
            out += _split_long(chunk)
    return out


def _split_long(chunk: str) -> list[str]:
    words = chunk.split()
    if len(words) <= _MAX_CHUNK_WORDS:
        return [chunk]
    parts = -(-len(words) // _MAX_CHUNK_WORDS)
    size = -(-len(words) // parts)
    return [" ".join(words[i : i + size]) for i in range(0, len(words), size)]


def _ends_sentence(chunk: str) -> bool:
    return chunk.rstrip("\"')]").endswith((".", "!", "?", "…"))


class PiperTTS:
    """:class:`~parley.engine.models.base.TextToSpeech` with one Piper voice."""

    def __init__(
        self,
        model_path: Path,
        config_path: Path,
        *,
        load_path: Path | None = None,
        threads: int = 2,
        noise_scale: float | None = None,
        noise_w: float | None = None,
        spin: bool = False,
    ) -> None:
        import onnxruntime as ort
        from piper import PiperVoice
        from piper.config import PiperConfig

        self.model_path = Path(model_path)
        config = PiperConfig.from_dict(json.loads(Path(config_path).read_text(encoding="utf-8")))
        opts = ort.SessionOptions()
        # Measured on the 2-core machine: 2 intra-op threads synthesize a chunk
        # ~1.6x faster than 1 when idle (RTF 0.05 vs 0.08); while llama.cpp
        # generates the next sentence both settings take ~210-240 ms a chunk.
        # Spinning worker threads would burn the core the LLM needs, so no spin.
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        # No memory arena: every sentence has another length, and the arena kept growing with
        # them (+217 MB over 300 sentences, 415 MB and still rising; without it RSS went back to
        # 182 MB after each), at the same speed (~105 ms p50 a short sentence either way).
        opts.enable_cpu_mem_arena = False
        if not spin:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(
            str(load_path or model_path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._has_durations = len(session.get_outputs()) > 1
        if not self._has_durations:
            log.warning("piper voice has no duration output: word timings are estimated")
        self._voice = PiperVoice(session=session, config=config)
        self._config = config
        self.sample_rate: int = config.sample_rate
        self.noise_scale = config.noise_scale if noise_scale is None else noise_scale
        self.noise_w = config.noise_w_scale if noise_w is None else noise_w
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="piper")
        self._lock = threading.Lock()

    @property
    def has_alignments(self) -> bool:
        return self._has_durations

    def voices(self) -> list[str]:
        return [VOICE_NAME]

    async def synthesize(
        self, text: str, *, voice: str | None = None, speed: float = 1.0
    ) -> AsyncGenerator[SpeechChunk, None]:
        # Any voice name (OpenAI's "alloy", "verse"…) maps to the one voice there is.
        chunks = split_chunks(text)
        if not chunks:
            return
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[SpeechChunk]] = []

        def submit(i: int) -> None:
            futures.append(loop.run_in_executor(self._executor, self.synthesize_chunk, chunks[i], speed))

        submit(0)
        try:
            for i in range(len(chunks)):
                if i + 1 < len(chunks):
                    submit(i + 1)  # one ahead: the next chunk is ready when this one has played
                chunk = await futures[i]
                if len(chunk.audio):
                    yield chunk
        finally:
            for fut in futures:
                fut.cancel()

    # -- synchronous core ------------------------------------------------------------

    def synthesize_chunk(self, text: str, speed: float = 1.0) -> SpeechChunk:
        """Speak one chunk (blocking): int16 audio plus word timings."""
        with self._lock:
            sentences = [p for p in self._voice.phonemize(text) if p]
            audio_parts: list[np.ndarray] = []
            phonemes: list[str] = []
            bounds: list[tuple[int, int]] | None = []  # sample span of each phoneme
            offset = 0
            for k, sentence in enumerate(sentences):  # espeak may see more than one sentence
                audio, spans = self._run(sentence, speed)
                if k:
                    phonemes.append(" ")
                    if bounds is not None:
                        bounds.append((offset, offset))
                phonemes += sentence
                if spans is None:
                    bounds = None
                elif bounds is not None:
                    bounds += [(offset + a, offset + b) for a, b in spans]
                audio_parts.append(audio)
                offset += len(audio)
        audio = np.concatenate(audio_parts) if audio_parts else np.zeros(0, dtype=np.float32)
        peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
        pcm = (
            (np.clip(audio / peak, -1.0, 1.0) * 32767).astype(np.int16)
            if peak > 1e-8
            else audio.astype(np.int16)
        )
        words: list[WordTiming]
        if bounds and len(bounds) == len(phonemes):  # exact: from the model's durations
            words = align_words(text, phonemes, bounds, self.sample_rate, self._phonemize_word)
        else:
            words = proportional_timings(text, pcm, self.sample_rate, self._phonemize_word)
        if len(pcm) > 4 * self.sample_rate:
            release_freed_memory()
        return SpeechChunk(audio=pcm, sample_rate=self.sample_rate, text=text, words=words)

    def _run(self, phonemes: list[str], speed: float) -> tuple[np.ndarray, list[tuple[int, int]] | None]:
        """Audio of one phonemized sentence and each phoneme's sample span."""
        id_map = self._config.phoneme_id_map
        pad = list(id_map["_"])
        ids: list[int] = [*id_map["^"], *pad]
        phoneme_ids: list[tuple[int, int]] = []  # id index span of each phoneme (with its pad)
        for p in phonemes:
            start = len(ids)
            if p in id_map:
                ids += [*id_map[p], *pad]
            phoneme_ids.append((start, len(ids)))
        ids += id_map["$"]
        length_scale = self._config.length_scale / max(0.25, min(4.0, speed))
        inputs = {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.array([self.noise_scale, length_scale, self.noise_w], dtype=np.float32),
        }
        if self._config.num_speakers > 1:
            inputs["sid"] = np.array([self._config.default_speaker_id], dtype=np.int64)
        outputs = self._voice.session.run(None, inputs)
        audio = outputs[0].reshape(-1).astype(np.float32)
        if len(outputs) < 2:
            return audio, None
        samples = outputs[1].reshape(-1).astype(np.int64) * self._config.hop_length
        if len(samples) != len(ids):
            return audio, None
        edges = np.concatenate([[0], np.cumsum(samples)])
        scale = len(audio) / edges[-1] if edges[-1] else 1.0  # exactly 1.0 for VITS; guards odd voices
        spans = [(int(edges[a] * scale), int(edges[b] * scale)) for a, b in phoneme_ids]
        return audio, spans

    def _phonemize_word(self, word: str) -> str:
        with_lock = self._voice.phonemize(word)
        return " ".join(
            "".join(p for p in sentence if p not in _PUNCT).strip() for sentence in with_lock
        ).strip()

    def warmup(self) -> None:
        self.synthesize_chunk("Hello, this is a warm-up sentence for the voice.")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
