"""RecitalGuard: a reply that starts reading its prompt aloud is ended there (no models)."""

from __future__ import annotations

from parley.engine.models.recital import RecitalGuard

PROMPT = (
    "You are Parley, a friendly voice assistant in a live spoken conversation. "
    "Everything you say is turned into speech, so talk like a person on the phone."
)


def _feed(guard: RecitalGuard, reply: str) -> str:
    said = "".join(guard.push(piece + " ") for piece in reply.split())
    return said + guard.flush()


def test_a_recital_from_the_first_word_is_never_said() -> None:
    guard = RecitalGuard(PROMPT)
    said = _feed(guard, "You're Parley, a friendly voice assistant in a live spoken conversation. Everything")
    assert said == "" and guard.recited


def test_the_reply_s_own_words_pass_once_clearly_its_own() -> None:
    guard = RecitalGuard(PROMPT)
    assert guard.push("I'm glad ") == ""  # held back: could still be the start of a recital
    said = _feed(guard, "you got back from your trip to Spain! What would you like to know?")
    assert "I'm glad you got back from your trip to Spain!" in "I'm glad " + said
    assert not guard.recited


def test_a_short_reply_is_said_at_the_end() -> None:
    guard = RecitalGuard(PROMPT)
    assert _feed(guard, "Bees make honey.") == "Bees make honey. "


def test_a_recital_later_on_ends_the_reply_there() -> None:
    guard = RecitalGuard(PROMPT, hold_words=0)
    said = _feed(guard, "Sure thing. Everything you say is turned into speech, so talk like")
    assert said.startswith("Sure thing.") and "into speech" not in said and guard.recited


def test_sharing_a_few_words_with_the_prompt_is_no_recital() -> None:
    guard = RecitalGuard(PROMPT)
    said = _feed(guard, "I'm Parley, a friendly voice here to help. What shall we talk about?")
    assert not guard.recited and said.startswith("I'm Parley")


def test_a_held_reply_keeps_the_sentences_before_a_recital() -> None:
    guard = RecitalGuard(PROMPT, hold_words=20)
    said = _feed(guard, "You're welcome! Glad to help. Everything you say is turned into speech, so")
    assert said == "You're welcome! Glad to help." and guard.recited


def test_a_tool_s_snake_case_name_is_never_said() -> None:
    guard = RecitalGuard(PROMPT, names=("get_current_time", "calculate"))
    said = _feed(guard, "You're welcome! Here's a response: **get_current_time**: Returns the time.")
    assert said == "You're welcome!" and guard.recited
    assert RecitalGuard(PROMPT, hold_words=0, names=("calculate",)).push("I can calculate that. ") != ""
