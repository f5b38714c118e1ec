"""What a tool is about, in words, and whether a user's message speaks of it.

Two users of this: the router that picks a tool for a model that cannot decide
(by the tool's name), and the check on a model that decides for itself (by its
name and description), which turns down a call whose subject the user never
mentioned: measured on Qwen2.5-0.5B with ``parley serve``'s tools, "What color
is the sky on a clear day?" came back as ``get_current_time`` and "How many legs
does a spider have?" as ``calculate``.
"""

from __future__ import annotations

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


def words(text: str) -> set[str]:
    """Lower-case words of ``text``, camelCase and snake_case split, a plural 's' dropped."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    found = re.findall(r"[a-z0-9]+", spaced.lower())
    return {w[:-1] if len(w) > 4 and w.endswith("s") else w for w in found}


def name_subject(tool: ToolSpec) -> set[str]:
    """The words of a tool's name that say what it is about ('get_weather' → {'weather'})."""
    return words(tool.name) - GENERIC


def subject(tool: ToolSpec) -> set[str]:
    """Name and description words that say what a tool is about."""
    return (words(tool.name) | words(tool.description)) - GENERIC


def mentions(message: str, tool: ToolSpec) -> bool:
    """Does ``message`` speak of what ``tool`` is for (or name it outright)?"""
    if tool.name.lower() in message.lower():
        return True
    return bool(subject(tool) & words(message))
