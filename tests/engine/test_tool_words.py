"""Whether a message speaks of a tool, and when a call the model chose itself stands."""

from __future__ import annotations

import pytest

from parley.engine.models.base import ToolSpec
from parley.engine.models.llm_llama import SURE_CALL, LlamaLLM, _Plan
from parley.engine.models.tool_words import grounded, mentions, name_subject, numbers

TIME = ToolSpec("get_current_time", "Get the current local time and date in a time zone.")
CALC = ToolSpec("calculate", "Evaluate an arithmetic expression exactly, e.g. '12.5 * (3 + 4)'.")
NOTES = ToolSpec("list_notes", "List the notes saved so far in this conversation.")


def test_subject_words_leave_out_generic_verbs() -> None:
    assert name_subject(TIME) == {"time"}
    assert name_subject(ToolSpec("getWeatherForecast")) == {"weather", "forecast"}


def test_mentions_by_name_description_or_plural() -> None:
    assert mentions("What's the time in London?", TIME)
    assert mentions("What is today's date?", TIME)
    assert mentions("Read me my notes.", NOTES)
    assert mentions("please call get_current_time", TIME)
    assert not mentions("What color is the sky on a clear day?", TIME)
    assert not mentions("How many legs does a spider have?", CALC)


def _plan(question: str, tools: list[ToolSpec]) -> _Plan:
    return _Plan("", tools, None, False, True, 64, question)


def test_a_call_stands_when_mentioned_or_sure() -> None:
    plan = _plan("How many legs does a spider have?", [TIME, CALC])
    assert LlamaLLM._call_candidates(plan, CALC, 0.3) == []  # unmentioned, unsure
    assert LlamaLLM._call_candidates(plan, CALC, SURE_CALL) == [CALC]  # sure ("what is two plus two?")
    assert LlamaLLM._call_candidates(_plan("Can you calculate 17 times 23?", [CALC]), CALC, 0.1) == [CALC]


def test_a_made_up_tool_name_goes_to_a_mentioned_tool_or_to_words() -> None:
    add = ToolSpec("add_note", "Save a short note for later in this conversation.")
    plan = _plan("Read me my notes.", [TIME, add, NOTES])
    assert LlamaLLM._call_candidates(plan, None, 0.9) == [add, NOTES]  # the grammar picks one of them
    assert (
        LlamaLLM._call_candidates(_plan("How many legs does a spider have?", [TIME, CALC]), None, 0.99) == []
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("What is two plus two?", {2}),
        ("Can you calculate seventeen times twenty-three?", {17, 23}),
        ("two hundred and five", {205}),
        ("three thousand four hundred and twelve", {3412}),
        ("a hundred", {100}),
        ("144 divided by 12", {144, 12}),
        ("1,200 and 3.5", {1200, 3.5}),
        ("How many days are there in a week?", set()),
    ],
)
def test_numbers_in_digits_and_words(text: str, expected: set[float]) -> None:
    assert numbers(text) == expected


def test_an_unasked_call_must_start_from_the_users_numbers() -> None:
    assert not grounded('{"expression": "7 * 24 * 60 * 60"}', "How many days are there in a week?")
    assert grounded('{"expression": "2 + 2"}', "What is two plus two?")
    assert grounded('{"expression": "2 * 24"}', "How many hours are in two days?")
    assert not grounded('{"expression": "7 * 24"}', "How many hours are in a week?")
    assert grounded("{}", "Read me my notes.")  # no arguments: nothing to check


def test_an_unasked_call_must_start_from_the_users_words() -> None:
    # Statements opened calls at P = 0.91-0.97 with Qwen2.5-0.5B and parley serve's tools.
    assert not grounded('{"timezone": "Europe/Paris"}', "I love cooking Italian food.")
    assert not grounded('{"timezone": "UTC"}', "My sister is visiting next week.")
    assert grounded('{"timezone": "Asia/Tokyo"}', "Is it late in Tokyo now?")
    assert grounded('{"text": "buy milk"}', "I need to buy milk.")


def test_the_verb_of_a_tool_name_alone_is_no_mention() -> None:
    clear = ToolSpec("clear_notes", "Delete all notes saved in this conversation.")
    assert not mentions("I need a clear answer: is the earth round?", clear)
    assert mentions("Clear my notes, please.", clear)
    assert mentions("Delete everything I saved.", clear)  # by its description
    assert mentions("Can you calculate 17 times 23?", ToolSpec("calculate", "Evaluate arithmetic."))
