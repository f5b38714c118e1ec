"""The spoken sessions of ``parley bench soak``: people talking to the engine, for a long time.

Each session connects, sends the web page's session (``page_session()``: semantic_vad with
eagerness low, the page's instructions and voice, no tools: the engine alone runs none),
and asks a few synthesised questions, streamed in real time as 20 ms PCM chunks. It waits
for the spoken reply and listens to it at real-time pace; now and then it speaks over the
reply instead (a barge-in: the engine must cancel a reply it is still generating,
``response.done`` with status ``cancelled``; the client truncates the reply to what it
played, as the clients do), and the interruption's own reply is the next turn. Between questions it
thinks for a moment; after ``per_session`` turns it leaves, and a fresh session connects.

A turn's latency is the user's true end of speech → the reply's first audio delta.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from parley.bench.speech import silence, synthesize
from parley.bench.spoken_user import Events, until_spoken
from parley.bench.turn import INTERRUPTIONS, QUESTIONS, Microphone
from parley.protocol.audio_formats import CANONICAL_RATE
from parley.server.page_defaults import page_session

THINK_S = (1.0, 3.0)  # the pause before asking the next question
# How far into the reply's playback the user starts speaking over it: early enough that
# the engine is usually still generating (a few sentences take the 0.5B model seconds).
BARGE_AFTER_S = (0.2, 0.8)


@dataclass
class KindTally:
    """What the sessions of one kind did."""

    turns: list[tuple[float, float]] = field(default_factory=list)  # (s into the run, latency ms)
    failures: list[str] = field(default_factory=list)
    barge_ins: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)  # spoken: one per turn, for the JSON
    sessions: int = 0


@dataclass
class Voice:
    """The few utterances spoken sessions use, synthesised once per run."""

    questions: list[tuple[str, np.ndarray]]  # (text, 24 kHz PCM)
    interruptions: list[tuple[str, np.ndarray]]

    @classmethod
    def synthesise(cls) -> Voice:
        # Questions whose replies run to a few sentences (on this machine the 0.5B model was
        # still generating them 2-3 s after their first audio, so a barge-in finds them in
        # progress), and interruptions that ask for something else.
        return cls(
            [
                (q, np.concatenate([synthesize(q), silence(0.1)]))
                for q in (QUESTIONS[i] for i in (2, 3, 4, 7))
            ],
            [(q, synthesize(q)) for q in (INTERRUPTIONS[0], INTERRUPTIONS[3])],
        )


async def warm_up(models: Any) -> None:
    """Transcribe and speak once, so the baseline already has what every spoken turn uses.

    STT and TTS each start one worker thread on first use that stays for the life of the
    process (not a session's): started during the run, they would read as threads left over.
    """
    await models.stt.transcribe(np.zeros(CANONICAL_RATE // 2, dtype=np.float32))
    async for _ in models.tts.synthesize("Hello."):
        pass


def _is_done(response_id: str) -> Any:
    return lambda e: e["type"] == "response.done" and e["response"]["id"] == response_id


async def spoken_session(
    url: str,
    voice: Voice,
    per_session: int,
    barge_in_share: float,
    rng: random.Random,
    tally: KindTally,
    t0: float,
    stop: asyncio.Event,
    reply_timeout: float,
) -> None:
    """One spoken session: connect, hold ``per_session`` turns, leave."""
    import websockets

    async with websockets.connect(url, max_size=None, open_timeout=30) as ws:
        tally.sessions += 1
        errors: list[str] = []
        events = Events(ws, errors)
        reader = asyncio.create_task(events.read())
        mic = Microphone(ws)
        mic_task: asyncio.Task[None] | None = None
        try:
            await events.wait_for(lambda e: e["type"] == "session.created", 0, 30)
            await ws.send(json.dumps({"type": "session.update", "session": page_session()}))
            await events.wait_for(lambda e: e["type"] == "session.updated", 0, 30)
            mic_task = asyncio.create_task(mic.run())
            seen: set[str] = set()
            pending: str | None = None  # an interruption already spoken: its reply is the next turn
            said: dict[str, str] = {}  # label → the words
            for n in range(per_session):
                if stop.is_set():
                    break
                label = pending
                if label is None:
                    await asyncio.sleep(rng.uniform(*THINK_S))
                    label = f"q{n}"
                    said[label], pcm = rng.choice(voice.questions)
                    mic.say(pcm, label)
                pending = None
                await until_spoken(mic, label, end=True)
                speech_end = mic.sent_voice[label][1]
                after = len(events.items)  # replies to this utterance come after its end
                try:
                    t_audio, delta = await events.next_reply_audio(seen, after, reply_timeout)
                except TimeoutError:
                    tally.failures.append(f"spoken: no reply audio within {reply_timeout:.0f} s")
                    continue
                response_id = delta["response_id"]
                latency = (t_audio - speech_end) * 1000
                stopped = [
                    t
                    for t, e in events.items[after:]
                    if e["type"] == "input_audio_buffer.speech_stopped" and t <= t_audio
                ]
                row = {
                    "t_s": round(speech_end - t0, 1),
                    "said": said[label],
                    "latency_ms": round(latency),
                    # the end-of-turn decision's share of the latency (semantic_vad: 600-900 ms, or
                    # its 8 s fallback when the end-of-turn model stays unsure)
                    "end_of_turn_ms": round((stopped[-1] - speech_end) * 1000) if stopped else None,
                    "barged_in": False,
                }
                if n + 1 < per_session and rng.random() < barge_in_share:
                    await asyncio.sleep(rng.uniform(*BARGE_AFTER_S))
                    pending = f"i{n}"
                    mark = len(events.items)
                    said[pending], pcm = rng.choice(voice.interruptions)
                    mic.say(pcm, pending)
                    barge = await _barge_in(ws, events, mic, pending, delta, mark, after, reply_timeout)
                    tally.barge_ins.append(barge)
                    tally.failures.extend(f"spoken: barge-in: {problem}" for problem in barge["problems"])
                    tally.turns.append((speech_end - t0, latency))
                    tally.rows.append(row | {"barged_in": True})
                    continue
                _, _, done = await events.wait_for(_is_done(response_id), after, reply_timeout * 4)
                status = done["response"]["status"]
                if status != "completed":
                    tally.failures.append(
                        f"spoken: reply ended {status}: {done['response'].get('status_details')}"
                    )
                    continue
                tally.turns.append((speech_end - t0, latency))
                tally.rows.append(row)
                play = events.playback[response_id]
                await asyncio.sleep(max(0.0, play.runs_out - time.perf_counter()))  # listen to the end
        finally:
            for task in (mic_task, reader):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            tally.failures.extend(f"spoken: error event: {m}" for m in errors)


async def _barge_in(
    ws: Any,
    events: Events,
    mic: Microphone,
    label: str,
    delta: dict[str, Any],
    mark: int,
    after: int,
    timeout: float,
) -> dict[str, Any]:
    """The user speaks over the reply ``delta`` began; what the engine (and the client) did.

    As the clients do (README, Barge-in in the clients): on ``speech_started`` the engine
    cancels a reply still being generated; the client stops its playback and, if the reply
    was audible, truncates it to what was heard. A reply whose generation had finished before
    the engine heard the user (its ``response.done`` came first) has nothing to cancel.
    """
    response_id = delta["response_id"]
    await until_spoken(mic, label, end=False)
    onset = mic.sent_voice[label][0]
    i_started, t_started, _ = await events.wait_for(
        lambda e: e["type"] == "input_audio_buffer.speech_started", mark, timeout
    )
    play = events.playback[response_id]
    truncated: bool | None = None
    audio_end_ms: int | None = None
    if play.audible(t_started):
        audio_end_ms = play.heard_ms(t_started)
        event_id = f"truncate_{label}"
        await ws.send(
            json.dumps(
                {
                    "type": "conversation.item.truncate",
                    "event_id": event_id,
                    "item_id": delta["item_id"],
                    "content_index": 0,
                    "audio_end_ms": audio_end_ms,
                }
            )
        )
        _, _, ack = await events.wait_for(
            lambda e: (
                (e["type"] == "conversation.item.truncated" and e["item_id"] == delta["item_id"])
                or (e["type"] == "error" and e["error"].get("event_id") == event_id)
            ),
            i_started,
            timeout,
        )
        truncated = ack["type"] == "conversation.item.truncated"
    i_done, t_done, done = await events.wait_for(_is_done(response_id), after, timeout)
    status = done["response"]["status"]
    finished_first = i_done < i_started
    problems = []
    if not finished_first and status != "cancelled":
        problems.append(f"the reply ended {status} after speech_started, not cancelled")
    if truncated is False:
        problems.append("truncate refused")
    return {
        "status": status,
        "cancelled": status == "cancelled",
        "finished_before_speech_started": finished_first,
        "onset_to_speech_started_ms": round((t_started - onset) * 1000),
        "speech_started_to_done_ms": None if finished_first else round((t_done - t_started) * 1000),
        "heard_ms": audio_end_ms,
        "truncated": truncated,
        "problems": problems,
    }


async def spoken_loop(
    url: str,
    voice: Voice,
    stop: asyncio.Event,
    per_session: int,
    barge_in_share: float,
    rng: random.Random,
    tally: KindTally,
    t0: float,
    *,
    rounds: int | None = None,
    reply_timeout: float = 60.0,
) -> None:
    """Spoken sessions one after another until ``stop`` (or ``rounds`` sessions)."""
    made = 0
    while not stop.is_set() and (rounds is None or made < rounds):
        made += 1
        try:
            await spoken_session(url, voice, per_session, barge_in_share, rng, tally, t0, stop, reply_timeout)
        except Exception as exc:  # a failed session is a result; the user calls again
            tally.failures.append(f"spoken: {type(exc).__name__}: {exc}")
            await asyncio.sleep(1.0)
