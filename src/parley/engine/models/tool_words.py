"""What a tool is about, in words, and whether a user's message speaks of it.

Two users of this: the router that picks a tool for a model that cannot decide
(by the tool's name), and the check on a model that decides for itself (by its
name and description), which turns down a call whose subject the user never
mentioned: measured on Qwen2.5-0.5B with ``parley serve``'s tools, "What color
is the sky on a clear day?" came back as ``get_current_time`` and "How many legs
does a spider have?" as ``calculate``. A call the user did not speak of must also
start from the user's own words or numbers (:func:`grounded`).
"""

from __future__ import annotations

import json
import re

from parley.engine.models.base import ToolSpec

# Words that say nothing about what a tool is for.
GENERIC = frozenset(
    """
    get set do run make fetch find lookup look check tool call use the a an of for to in on at by
    with and or is are be current given some any this that it its from into about return returns
    value data info information function user list add new create e g eg like so far all later
    """.split()
)


def _split(text: str) -> list[str]:
    """Lower-case words of ``text`` in order, camelCase and snake_case split."""
    return re.findall(r"[a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", text).lower())


def words(text: str) -> set[str]:
    """Lower-case words of ``text``, camelCase and snake_case split, a plural 's' dropped."""
    return {w[:-1] if len(w) > 4 and w.endswith("s") else w for w in _split(text)}


def name_subject(tool: ToolSpec) -> set[str]:
    """The words of a tool's name that say what it is about ('get_weather' → {'weather'})."""
    return words(tool.name) - GENERIC


def subject(tool: ToolSpec) -> set[str]:
    """Name and description words that say what a tool is about.

    Of a name of several words the first is left out: by convention it is the verb
    (``clear_notes``, ``send_email``), and a verb alone is a weak sign: "I need a clear answer"
    is not about notes (Qwen2.5-0.5B called clear_notes there, P = 0.45 of opening a call).
    """
    parts = _split(tool.name)
    name = words(" ".join(parts[1:] or parts))
    return (name | words(tool.description)) - GENERIC


def mentions(message: str, tool: ToolSpec) -> bool:
    """Does ``message`` speak of what ``tool`` is for (or name it outright)?"""
    if tool.name.lower() in message.lower():
        return True
    return bool(subject(tool) & words(message))


_UNITS = {
    w: n
    for n, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen".split()
    )
}
_TENS = {w: 10 * n for n, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)}
_SCALES = {"thousand": 1000, "million": 1_000_000}
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def numbers(text: str) -> set[float]:
    """The numbers ``text`` says, in digits or in words ("seventeen times twenty-three" → {17, 23})."""
    found = {float(m) for m in _NUMBER.findall(text.replace(",", ""))}
    total: int | None = None  # thousands and millions read so far
    group: int | None = None  # the part below a thousand being read

    def flush() -> None:
        nonlocal total, group
        if total is not None or group is not None:
            found.add(float((total or 0) + (group or 0)))
        total = group = None

    for word in re.findall(r"[a-z]+", text.lower()):
        part = _UNITS.get(word, _TENS.get(word))
        if part is not None:
            if group is None:
                group = part
                continue
            hundreds = group >= 100 and group % 100 == 0  # "two hundred" + "five"
            tens = group % 100 >= 20 and group % 10 == 0 and part < 10  # "twenty" + "three"
            if hundreds or tens:
                group += part
            else:
                flush()
                group = part
        elif word == "hundred":
            group = (group or 1) * 100  # "a hundred", "two hundred"
        elif word in _SCALES and (group is not None or total is not None):
            total, group = (total or 0) + (group or 1) * _SCALES[word], None
        elif word == "and" and (total is not None or (group or 0) >= 100):
            continue  # "two hundred and five"
        else:
            flush()
    flush()
    return found


def grounded(arguments: str, message: str) -> bool:
    """Do a call's ``arguments`` start from something the user said?

    For a call the user did not ask for. Its argument values are read for numbers (in digits or
    words) and words; with none there is nothing to check, otherwise one of them must be the
    user's. Measured on Qwen2.5-0.5B with ``parley serve``'s tools: statements opened calls at
    P = 0.91-0.97 ("My sister is visiting next week." → get_current_time("UTC"), "I love cooking
    Italian food." → get_current_time("Europe/Paris")), and "How many days are there in a week?"
    → calculate("7 * 24 * 60 * 60"), answered "604800 days". One number or word of the user's is
    enough: "How many hours are in two days?" → calculate("2 * 24") stands.
    """
    said = _values(arguments)
    used_numbers = numbers(said)
    used_words = {w for w in words(said) if len(w) >= 3 and not w.isdigit()} - GENERIC
    if not used_numbers and not used_words:
        return True
    return bool(used_numbers & numbers(message)) or bool(used_words & words(message))


def _values(arguments: str) -> str:
    """The text of a call's argument values (not its keys); the raw text if it is not JSON."""
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        return arguments
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif node is not None and not isinstance(node, bool):
            found.append(str(node))

    walk(parsed)
    return " ".join(found)
