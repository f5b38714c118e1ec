from __future__ import annotations

import time

import numpy as np
import pytest

from parley.engine.models.tts_piper import split_chunks
from parley.engine.models.word_align import voiced_span
from tests.models.conftest import to_float
from tests.support.text import similar, words

pytestmark = [pytest.mark.models]


async def chunks_of(tts, text: str, **kw) -> list:
    return [c async for c in tts.synthesize(text, **kw)]


async def test_speech_is_audible_and_intelligible(models) -> None:
    tts, stt = models.tts, models.stt
    text = "The weather in London is sunny today. It is a good day for a walk in the park."
    chunks = await chunks_of(tts, text)
    assert len(chunks) >= 2  # one per sentence
    assert " ".join(c.text for c in chunks) == text
    audio = np.concatenate([c.audio for c in chunks])
    assert audio.dtype == np.int16 and chunks[0].sample_rate == tts.sample_rate == 22050
    assert np.abs(audio).max() > 10000
    heard = await stt.transcribe(to_float(audio, tts.sample_rate))
    # Word recall, not a verbatim match: Whisper base may hear "in" as "and" on another CPU.
    assert similar(text, heard.text, 0.8), heard.text
    assert {"weather", "london", "sunny", "walk", "park"} <= set(words(heard.text)), heard.text


async def test_word_timings_are_monotonic_and_cover_the_audio(models) -> None:
    for text in [
        "I am fine, thank you for asking.",
        "It's 6 o'clock and I'll set a timer for 10 minutes.",
        "There are 1,250 people in the U.S.A. office!",
        "Hello.",
    ]:
        for chunk in await chunks_of(models.tts, text):
            assert [w.text for w in chunk.words] == chunk.text.split()
            prev = 0.0
            for w in chunk.words:
                assert prev <= w.start <= w.end <= chunk.duration, (chunk.text, chunk.words)
                prev = w.end
            assert all(w.end > w.start for w in chunk.words if any(ch.isalnum() for ch in w.text))
            v0, v1 = voiced_span(chunk.audio, chunk.sample_rate, threshold_db=-40)
            assert abs(chunk.words[0].start - v0 / chunk.sample_rate) < 0.1, chunk.words
            assert abs(chunk.words[-1].end - v1 / chunk.sample_rate) < 0.1, chunk.words


async def test_cutting_at_a_word_end_keeps_exactly_the_words_before(models) -> None:
    # The session trims the transcript to the words whose end <= audio_end_ms;
    # check against what Whisper hears in the cut audio.
    tts, stt = models.tts, models.stt
    (chunk,) = await chunks_of(tts, "My brother bought seven green apples at the market yesterday.")
    spoken = [w.text for w in chunk.words]
    for k in (2, 4, 6):
        cut = int(chunk.words[k - 1].end * chunk.sample_rate)
        heard = words((await stt.transcribe(to_float(chunk.audio[:cut], chunk.sample_rate))).text)
        expected = words(" ".join(spoken[:k]))
        assert heard[: k - 1] == expected[: k - 1], (k, heard)
        later = set(words(" ".join(spoken[k + 1 :])))
        assert not later & set(heard), (k, heard)  # nothing from two words on was audible


async def test_speed_changes_duration(models) -> None:
    text = "Please remember to water the plants tomorrow morning."
    normal = sum(c.duration for c in await chunks_of(models.tts, text))
    fast = sum(c.duration for c in await chunks_of(models.tts, text, speed=1.5))
    slow = sum(c.duration for c in await chunks_of(models.tts, text, speed=0.6))
    assert fast < normal * 0.8 and slow > normal * 1.2


async def test_any_voice_name_maps_to_the_one_voice(models) -> None:
    assert models.tts.voices() == ["joe"]
    chunks = await chunks_of(models.tts, "Hi there.", voice="alloy")
    assert chunks and len(chunks[0].audio) > 0


async def test_empty_and_punctuation_only_text(models) -> None:
    assert await chunks_of(models.tts, "") == []
    assert await chunks_of(models.tts, " ... ") == []


async def test_first_chunk_arrives_before_the_rest_is_made(models) -> None:
    text = "Sure. " + " ".join(["This is a longer sentence that follows the first short one."] * 4)
    start = time.perf_counter()
    stream = models.tts.synthesize(text)
    first = await anext(stream)
    first_at = time.perf_counter() - start
    rest = [c async for c in stream]
    total = time.perf_counter() - start
    assert first.text == "Sure." and len(rest) >= 4
    assert first_at < total / 3


def test_split_chunks() -> None:
    assert split_chunks("Hi. How are you? I'm fine!") == ["Hi.", "How are you?", "I'm fine!"]
    assert split_chunks("We met the U.S.A. team today.") == ["We met the U.S.A. team today."]
    assert split_chunks("Please add milk, eggs and bread to my list, and remind me tomorrow.") == [
        "Please add milk,",
        "eggs and bread to my list,",
        "and remind me tomorrow.",
    ]
    assert split_chunks("Well, yes.") == ["Well, yes."]
    assert split_chunks("Mr. and Mrs. Jones went to St. Louis. Then they left.") == [
        "Mr. and Mrs. Jones went to St. Louis.",
        "Then they left.",
    ]
    assert split_chunks("J. R. R. Tolkien wrote it.") == ["J. R. R. Tolkien wrote it."]
    assert split_chunks("  ") == []
