"""Agent scenarios: personas that hand the conversation to each other, a supervisor, guardrails.

The shipped scenarios are the ``*.yaml`` files beside this module; :mod:`.schema` checks them.
"""

from parley.scenarios.schema import (
    SUPERVISOR_TOOL,
    TRANSFER_PREFIX,
    Agent,
    Scenario,
    ScenarioError,
    builtin,
    load_file,
    parse,
    parse_text,
    resolve,
)

__all__ = [
    "SUPERVISOR_TOOL",
    "TRANSFER_PREFIX",
    "Agent",
    "Scenario",
    "ScenarioError",
    "builtin",
    "load_file",
    "parse",
    "parse_text",
    "resolve",
]
