"""The README's protocol matrix against openai-python's installed types and against the code.

* every client event, server event and session field the SDK declares has a row (and no
  row names something the SDK does not declare): a new SDK event fails here;
* a client event is marked handled exactly when the session has a handler for it;
* a server event is marked emitted exactly when its type literal occurs in the engine/host code;
* the README's copy is what the generator renders now.
"""

from __future__ import annotations

import re
from pathlib import Path
from unittest import mock

from parley.engine import protocol_matrix as pm
from parley.engine.session import RealtimeSession

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "src/parley/engine", ROOT / "src/parley/host"]


def test_every_declared_event_and_field_has_a_row() -> None:
    for declared, rows in (
        (pm.declared_client_events(), pm.CLIENT_EVENTS),
        (pm.declared_server_events(), pm.SERVER_EVENTS),
        (pm.declared_session_fields(), pm.SESSION_FIELDS),
    ):
        missing = [key for key in declared if key not in rows]
        assert not missing, f"openai-python declares these; add them to protocol_matrix.py: {missing}"
        stale = [key for key in rows if key not in declared]
        assert not stale, f"rows for names openai-python no longer declares: {stale}"
    statuses = {pm.YES, pm.PARTIAL, pm.ACCEPTED, pm.DROPPED, pm.REFUSED, pm.NO}
    for rows in (pm.CLIENT_EVENTS, pm.SERVER_EVENTS, pm.SESSION_FIELDS):
        assert {status for status, _ in rows.values()} <= statuses


def test_a_new_sdk_event_shows_up_as_missing() -> None:
    with mock.patch.object(pm, "declared_server_events", lambda: [*pm.SERVER_EVENTS, "brand.new_event"]):
        assert "| `brand.new_event` | **missing** |" in pm.render()


def test_client_rows_match_the_session_handlers() -> None:
    handled = set(RealtimeSession._handlers(mock.Mock()))  # type: ignore[arg-type]
    marked = {kind for kind, (status, _) in pm.CLIENT_EVENTS.items() if status != pm.NO}
    assert marked == handled


def test_server_rows_match_what_the_code_emits() -> None:
    code = "\n".join(
        p.read_text() for d in SOURCES for p in d.rglob("*.py") if p.name != "protocol_matrix.py"
    )
    emitted = {kind for kind in pm.SERVER_EVENTS if re.search(rf'"{re.escape(kind)}"', code)}
    marked = {kind for kind, (status, _) in pm.SERVER_EVENTS.items() if status != pm.NO}
    assert marked == emitted, {
        "marked, not in code": marked - emitted,
        "in code, marked no": emitted - marked,
    }


def test_readme_copy_is_current() -> None:
    readme = (ROOT / "README.md").read_text()
    assert pm.splice(readme, pm.render()) == readme, (
        "the README's protocol matrix is stale: run `make matrix`"
    )
