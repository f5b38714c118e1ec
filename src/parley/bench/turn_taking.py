"""Turn-taking quality: does the engine wait through a pause inside a clause, and answer a finished one?

Speech is synthesised at run time with the Piper voice. Each sentence (a
question or request, finished at its end) is spoken twice: once straight
through, and once with a 400–800 ms pause inserted after a word that cannot
end the sentence ("a table for | four people"). By default the sentence is
synthesised whole and cut at a word boundary (Piper's word timings), so the
first part keeps the rising or level pitch of a sentence that goes on;
``--fragments separate`` synthesises the two parts apart instead (each then
ends with a sentence's falling pitch: a harder case).

The audio goes through the real :class:`TurnDetector` with the real Silero
VAD, frame by frame in audio time (not wall time). At each ``Probe`` Whisper
transcribes the speech so far; at each ``Look`` the real end-of-turn model is
run on the speech so far. Their measured wall time is added in audio time
before the decision applies, as in the session (the transcription started at
the probe runs beside the model, so whichever finishes later counts).

Figures per setting:

* premature: a turn ended inside the inserted pause (the reply would cut in);
* answered: the turn ended after the finished sentence before the setting's
  long fallback wait (for ``server_vad``: it ended at all — it has no fallback);
* latency: end of speech (last audible 10 ms) → the end-of-turn decision, p50/p95.

Transcription time counts in full (the decision waits for it), yet the reply
needs that transcript anyway; ``--stt-ms`` replaces the measured time by a
fixed one, since a busy machine makes Whisper several times slower and a late
transcript also hides premature decisions (the pause is over before it arrives).

Results go to ``bench/results/turn_taking.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from parley.bench.speech import silence, voiced_span
from parley.bench.stats import summary
from parley.engine.config import EngineConfig
from parley.protocol.audio_formats import CANONICAL_RATE, int16_to_float, resample

RESULTS = Path("bench/results/turn_taking.json")
PAUSES_S = (0.4, 0.5, 0.6, 0.7, 0.8)
LEAD_S = 0.5
TAIL_S = 9.0  # longer than the longest fallback (low eagerness: 8 s)
CHUNK = CANONICAL_RATE // 50  # 20 ms, what a browser sends
PROBE_MS = EngineConfig().speculation_probe_ms  # the engine's (PARLEY_SPECULATION_PROBE_MS)

# (sentence, number of words before the inserted pause). Every cut falls inside a clause.
SENTENCES: tuple[tuple[str, int], ...] = (
    ("I would like to book a table for four people tomorrow evening.", 7),
    ("Can you tell me about the history of Rome?", 6),
    ("What is the weather going to be like in Paris on Saturday?", 6),
    ("Could you remind me to call my sister when I get home?", 7),
    ("How long does it take to drive from Boston to New York?", 8),
    ("Please set a timer for twenty minutes so I don't burn the rice.", 5),
    ("What time does the pharmacy on the corner of Main Street close?", 6),
    ("I need a recipe that uses chicken and some of the vegetables in my fridge.", 6),
    ("Can you explain how a heat pump keeps a house warm in winter?", 5),
    ("Which of the two laptops has the better battery for long flights?", 4),
    ("My flight was cancelled and I need to find another one for tomorrow.", 5),
    ("Tell me a short story about a dragon who is afraid of the dark.", 6),
    ("What should I pack for a week of hiking in the mountains?", 6),
    ("Is it safe to give my dog a little bit of cheese as a treat?", 7),
    ("How many cups of flour do I need for a dozen cookies?", 6),
    ("Could you translate good morning into Spanish for me?", 4),
    ("I was wondering whether the museum is open on public holidays.", 6),
    ("Why does the sky turn red and orange when the sun goes down?", 6),
    ("Can you find me a quiet cafe with good coffee near the station?", 7),
    ("What is the difference between a virus and a bacterium?", 6),
)


@dataclass
class Utterance:
    name: str
    audio: np.ndarray  # int16 at 24 kHz
    speech_end: float  # s, last audible frame
    pause: tuple[float, float] | None  # (start, end) s of the inserted pause


@dataclass
class Evidence:
    probability: float
    transcript: str
    model_s: float
    stt_s: float


# (utterance, speech start, the look's end, end of the probe whose transcript counts, the look)
# → (turn complete?, sure of it?, seconds until the decision is known)
Decide = Callable[[Utterance, int, int, int, Any], tuple[bool, bool, float]]


@dataclass
class Outcome:
    stops: list[float] = field(default_factory=list)  # s: when each end of turn was decided


# --- speech ----------------------------------------------------------------------------


def build_corpus(tts: Any, fragments: str, limit: int | None) -> list[Utterance]:
    out: list[Utterance] = []
    lead, tail = silence(LEAD_S), silence(TAIL_S)
    for i, (text, cut) in enumerate(SENTENCES[:limit]):
        whole = _speak(tts, text)
        out.append(_utterance(f"{i:02d}-whole", [lead, whole, tail], None))
        pause_s = PAUSES_S[i % len(PAUSES_S)]
        words = text.split()
        if fragments == "separate":
            first, second = _speak(tts, " ".join(words[:cut])), _speak(tts, " ".join(words[cut:]))
        else:
            chunk = tts.synthesize_chunk(text)
            pcm = resample(chunk.audio, chunk.sample_rate, CANONICAL_RATE).astype(np.int16)
            timings = chunk.words
            at = (timings[cut - 1].end + timings[cut].start) / 2
            split = int(at * CANONICAL_RATE)
            first, second = pcm[:split], pcm[split:]
        start = (len(lead) + len(first)) / CANONICAL_RATE
        out.append(
            _utterance(
                f"{i:02d}-pause{int(pause_s * 1000)}",
                [lead, first, silence(pause_s), second, tail],
                (start, start + pause_s),
            )
        )
    return out


def _speak(tts: Any, text: str) -> np.ndarray:
    chunk = tts.synthesize_chunk(text)
    return resample(chunk.audio, chunk.sample_rate, CANONICAL_RATE).astype(np.int16)


def _utterance(name: str, parts: list[np.ndarray], pause: tuple[float, float] | None) -> Utterance:
    audio = np.concatenate(parts)
    return Utterance(name, audio, voiced_span(audio)[1], pause)


# --- simulation --------------------------------------------------------------------------


def simulate(
    utt: Utterance,
    vad: Any,
    config: dict[str, Any],
    decide: Decide | None,
) -> Outcome:
    """Feed ``utt`` in 20 ms chunks; apply each semantic decision ``latency`` seconds of audio later."""
    from parley.engine.turn_detection import Look, Probe, SpeechStopped, TurnDetector

    det = TurnDetector(vad.stream(), vad.sample_rate, vad.frame_samples, config, probe_ms=PROBE_MS)
    outcome = Outcome()
    pending: list[tuple[float, bool, bool, int]] = []
    probe_end = 0
    for at in range(0, len(utt.audio) - CHUNK + 1, CHUNK):
        now = at / CANONICAL_RATE
        for item in [p for p in pending if p[0] <= now]:
            pending.remove(item)
            det.decide(item[1], item[3], sure=item[2])
        for signal in det.feed(utt.audio[at : at + CHUNK], 0):
            if isinstance(signal, Probe):
                probe_end = signal.end  # the transcription every look of this pause uses
            elif isinstance(signal, Look) and decide is not None:
                complete, sure, latency = decide(utt, signal.start, signal.end, probe_end, signal)
                pending.append((signal.end / CANONICAL_RATE + latency, complete, sure, det.pause))
            elif isinstance(signal, SpeechStopped):
                outcome.stops.append(signal.end / CANONICAL_RATE)
    return outcome


def score(
    name: str, corpus: list[Utterance], outcomes: list[Outcome], fallback_s: float | None
) -> dict[str, Any]:
    paused = [(u, o) for u, o in zip(corpus, outcomes, strict=True) if u.pause is not None]
    premature = [u.name for u, o in paused if any(s < u.speech_end for s in o.stops)]
    latencies: list[float] = []
    answered = 0
    for u, o in zip(corpus, outcomes, strict=True):
        final = [s for s in o.stops if s >= u.speech_end]
        if not final:
            continue
        latency = final[0] - u.speech_end
        latencies.append(latency * 1000)
        if fallback_s is None or latency < fallback_s - 0.05:
            answered += 1
    lat = summary(latencies)
    return {
        "setting": name,
        "premature_rate": len(premature) / len(paused) if paused else None,
        "premature": premature,
        "answered_without_fallback_rate": answered / len(corpus),
        "latency_ms": {k: lat[k] for k in ("n", "p50", "p95", "max")},
    }


# --- run ------------------------------------------------------------------------------------


async def _load(stages: tuple[str, ...]) -> dict[str, Any]:
    from parley.engine.config import ModelConfig
    from parley.engine.models.registry import load_stage

    cfg = ModelConfig()
    loaded = await asyncio.gather(*(load_stage(s, cfg) for s in stages))
    return {s.stage: s.model for s in loaded}


def main(args: argparse.Namespace) -> dict[str, Any]:
    from parley.engine.turn_detection import (
        EAGERNESS,
        SEMANTIC_TRANSCRIPT_WAIT_MS,
        turn_complete,
        turn_sure,
    )

    models = asyncio.run(_load(("vad", "stt", "tts", "turn")))
    vad, stt, tts, turn = models["vad"], models["stt"], models["tts"], models["turn"]
    corpus = build_corpus(tts, args.fragments, args.sentences)
    cache: dict[tuple[str, int, int], Evidence] = {}
    transcribed: set[tuple[str, int, int]] = set()

    def audio_of(utt: Utterance, start: int, end: int) -> np.ndarray:
        return int16_to_float(resample(utt.audio[start:end], CANONICAL_RATE, 16000))

    def evidence(utt: Utterance, start: int, end: int, transcribe: bool) -> Evidence:
        key = (utt.name, start, end)
        if key not in cache:
            t0 = time.perf_counter()
            p = turn.predict(audio_of(utt, start, end))
            cache[key] = Evidence(p, "", time.perf_counter() - t0, 0.0)
        ev = cache[key]
        if transcribe and key not in transcribed:
            transcribed.add(key)
            t0 = time.perf_counter()
            ev.transcript = asyncio.run(stt.transcribe(audio_of(utt, start, end), language="en")).text
            ev.stt_s = time.perf_counter() - t0
        return ev

    def decider(eagerness: str, use_model: bool, use_text: bool) -> Decide:
        threshold = EAGERNESS[eagerness].threshold

        def decide(
            utt: Utterance, start: int, end: int, probe_end: int, look: Any
        ) -> tuple[bool, bool, float]:
            ev = evidence(utt, start, end, transcribe=False)
            probability = ev.probability if use_model else None
            text, waits = None, [ev.model_s] * use_model
            if use_text:
                said = evidence(utt, start, probe_end, transcribe=True)
                text = said.transcript
                # The transcription started at the probe and runs beside the model; a later look
                # waits for whatever of it is still to come.
                stt_s = said.stt_s if args.stt_ms is None else args.stt_ms / 1000
                remaining = stt_s - (end - probe_end) / CANONICAL_RATE
                if use_model and remaining > ev.model_s + SEMANTIC_TRANSCRIPT_WAIT_MS / 1000:
                    # The session stops waiting for a late transcript: the model decides alone.
                    text = None
                    waits.append(ev.model_s + SEMANTIC_TRANSCRIPT_WAIT_MS / 1000)
                else:
                    waits.append(remaining)
            complete = turn_complete(
                probability, text, threshold, sentence_suffices_at=look.sentence_suffices_at
            )
            sure = look.first and turn_sure(probability, text, EAGERNESS[eagerness])
            return complete, sure, max([0.0, *waits])

        return decide

    results = []
    settings: list[tuple[str, dict[str, Any], Any, float | None]] = [
        (
            f"server_vad {args.silence_ms} ms",
            {"type": "server_vad", "threshold": 0.5, "silence_duration_ms": args.silence_ms},
            None,
            None,
        )
    ]
    variants = {"model": (True, False), "model+transcript": (True, True), "transcript": (False, True)}
    for variant in args.variants:
        for eagerness in ("low", "medium", "high"):
            settings.append(
                (
                    f"semantic_vad {eagerness} ({variant})",
                    {"type": "semantic_vad", "eagerness": eagerness},
                    decider(eagerness, *variants[variant]),
                    EAGERNESS[eagerness].max_wait_ms / 1000,
                )
            )
    # What-ifs for eagerness low's wait on sure turns (as if the table said so).
    shipped_low = EAGERNESS["low"]
    for wait in args.sure_waits:
        name = f"low-sure{wait}"
        EAGERNESS[name] = dataclasses.replace(shipped_low, sure_wait_ms=wait)
        settings.append(
            (
                f"semantic_vad low, sure turns {wait} ms (model+transcript)",
                {"type": "semantic_vad", "eagerness": name},
                decider(name, True, True),
                shipped_low.max_wait_ms / 1000,
            )
        )
    for name, config, decide, fallback in settings:
        outcomes = [simulate(u, vad, config, decide) for u in corpus]
        row = score(name, corpus, outcomes, fallback)
        results.append(row)
        lat = row["latency_ms"]
        print(
            f"{name:40s} premature {row['premature_rate']:6.1%}  answered {row['answered_without_fallback_rate']:6.1%}"
            f"  latency p50 {lat['p50'] or 0:5.0f} ms  p95 {lat['p95'] or 0:5.0f} ms",
            flush=True,
        )
    calls = list(cache.values())
    stt_calls = [cache[k] for k in transcribed]
    report = {
        "fragments": args.fragments,
        "stt_ms_counted": args.stt_ms if args.stt_ms is not None else "measured",
        "load_average_1min": os.getloadavg()[0],
        "utterances": len(corpus),
        "with_pause": sum(u.pause is not None for u in corpus),
        "pauses_s": list(PAUSES_S),
        "model_call_ms": summary([e.model_s * 1000 for e in calls]),
        "stt_call_ms": summary([e.stt_s * 1000 for e in stt_calls]),
        "settings": results,
        "probes": [
            {
                "utterance": k[0],
                "end_s": k[2] / CANONICAL_RATE,
                "p_complete": round(e.probability, 3),
                "text": e.transcript,
            }
            for k, e in cache.items()
        ],
    }
    mc = report["model_call_ms"]
    print(f"end-of-turn model call: p50 {mc['p50']:.0f} ms, p95 {mc['p95']:.0f} ms over {mc['n']} calls")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return report


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sentences", type=int, default=None, help=f"use the first N of {len(SENTENCES)} sentences"
    )
    parser.add_argument(
        "--fragments",
        choices=["cut", "separate"],
        default="cut",
        help="cut: one synthesis, paused at a word boundary; separate: the two parts synthesised apart",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=["model", "model+transcript", "transcript"],
        default=["model", "model+transcript", "transcript"],
        help="what semantic_vad decides from",
    )
    parser.add_argument(
        "--silence-ms", type=int, default=500, help="server_vad silence_duration_ms to compare"
    )
    parser.add_argument(
        "--stt-ms",
        type=float,
        default=None,
        help="count this transcription time instead of the measured one (which a busy machine inflates)",
    )
    parser.add_argument(
        "--sure-waits",
        type=int,
        nargs="*",
        default=[],
        help="also score eagerness low with these waits (ms) for turns the model is sure of",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)


def run(args: argparse.Namespace) -> int:
    main(args)
    return 0
