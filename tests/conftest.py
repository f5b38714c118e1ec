"""Suite-wide settings.

Every engine the tests start, in-process or as a subprocess, validates each
server event it emits against openai-python's types (strictly: undeclared
fields count as errors), so a malformed event fails the test that caused it
wherever it was observed from.
"""

from __future__ import annotations

import os

os.environ.setdefault("PARLEY_VALIDATE_EVENTS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
