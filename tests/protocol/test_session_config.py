"""apply_update alone: partial merges, whole replacement of turn_detection, and all-or-nothing checks."""

from __future__ import annotations

import copy

import pytest

from parley.protocol.errors import ProtocolError
from parley.protocol.session_config import (
    SEMANTIC_VAD_DEFAULTS,
    SERVER_VAD_DEFAULTS,
    apply_update,
    default_session,
)


def test_only_the_fields_present_change_and_the_input_is_untouched() -> None:
    before = default_session()
    snapshot = copy.deepcopy(before)
    after = apply_update(before, {"type": "realtime", "instructions": "Be brief."})
    assert before == snapshot
    assert after["instructions"] == "Be brief."
    assert {k: v for k, v in after.items() if k != "instructions"} == {
        k: v for k, v in before.items() if k != "instructions"
    }


def test_empty_values_clear() -> None:
    s = apply_update(default_session(), {"type": "realtime", "tools": [], "instructions": ""})
    assert s["tools"] == [] and s["instructions"] == ""
    s = apply_update(s, {"type": "realtime", "audio": {"input": {"turn_detection": None}}})
    assert s["audio"]["input"]["turn_detection"] is None


def test_turn_detection_is_replaced_whole_with_its_type_defaults() -> None:
    s = apply_update(
        default_session(),
        {
            "type": "realtime",
            "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 0.7}}},
        },
    )
    assert s["audio"]["input"]["turn_detection"] == {**SERVER_VAD_DEFAULTS, "threshold": 0.7}
    s = apply_update(
        s, {"type": "realtime", "audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}}
    )
    assert s["audio"]["input"]["turn_detection"] == SEMANTIC_VAD_DEFAULTS
    assert s["audio"]["input"]["turn_detection"]["interrupt_response"] is True


def test_a_bad_update_applies_nothing() -> None:
    before = default_session()
    snapshot = copy.deepcopy(before)
    with pytest.raises(ProtocolError) as err:
        apply_update(
            before,
            {"type": "realtime", "instructions": "changed", "audio": {"output": {"speed": 9}}},
        )
    assert err.value.param == "session.audio.output.speed"
    assert before == snapshot


@pytest.mark.parametrize(
    ("update", "code", "param"),
    [
        ({}, "missing_required_parameter", "session.type"),
        ({"type": "conversation"}, "invalid_value", "session.type"),
        ("realtime", "invalid_value", "session"),
        (
            {
                "type": "realtime",
                "audio": {"input": {"turn_detection": {"type": "server_vad", "eagerness": 3}}},
            },
            None,
            None,
        ),
        (
            {
                "type": "realtime",
                "audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "x"}}},
            },
            "invalid_value",
            "session.audio.input.turn_detection.eagerness",
        ),
        (
            {
                "type": "realtime",
                "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 2}}},
            },
            "invalid_value",
            "session.audio.input.turn_detection.threshold",
        ),
    ],
)
def test_checks(update: object, code: str | None, param: str | None) -> None:
    if code is None:  # a knob the type does not have is ignored
        apply_update(default_session(), update)
        return
    with pytest.raises(ProtocolError) as err:
        apply_update(default_session(), update)
    assert (err.value.code, err.value.param) == (code, param)


def test_the_voice_is_fixed_once_the_assistant_has_spoken() -> None:
    update = {"type": "realtime", "audio": {"output": {"voice": "cedar"}}}
    assert apply_update(default_session(), update)["audio"]["output"]["voice"] == "cedar"
    with pytest.raises(ProtocolError) as err:
        apply_update(default_session(), update, audio_started=True)
    assert err.value.code == "cannot_update_voice"
    same = {"type": "realtime", "audio": {"output": {"voice": default_session()["audio"]["output"]["voice"]}}}
    apply_update(default_session(), same, audio_started=True)
