"""The GA session object: defaults, partial updates and value checks.

The effective session is kept as a plain JSON-shaped dict (what goes on the
wire in ``session.created``/``session.updated``). ``apply_update`` merges a
``session.update`` payload into it the way the GA server does: only the
fields present change, ``""``/``[]``/``null`` clear, and nested objects such
as ``turn_detection`` are replaced whole with their type's defaults filled in.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from parley.protocol import ids
from parley.protocol.audio_formats import FORMAT_TYPES
from parley.protocol.errors import ProtocolError, invalid_value, missing_parameter

DEFAULT_MODEL = "gpt-realtime"
DEFAULT_VOICE = "marin"
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")

DEFAULT_INSTRUCTIONS = (
    "You are Parley, a friendly and helpful voice assistant. Your replies are spoken aloud, "
    "so keep them short: one or two sentences in plain, natural words, with no lists, "
    "markdown or emoji. Answer the question directly. If you did not understand the user, "
    "ask them to say it again."
)

SERVER_VAD_DEFAULTS: dict[str, Any] = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    # OpenAI's GA server returns 200 ms; Whisper needs whole utterances and a
    # synthetic voice pauses ~300 ms at commas, so the local default is longer.
    "silence_duration_ms": 500,
    "idle_timeout_ms": None,
    "create_response": True,
    "interrupt_response": True,
}
SEMANTIC_VAD_DEFAULTS: dict[str, Any] = {
    "type": "semantic_vad",
    "eagerness": "auto",
    "create_response": True,
    "interrupt_response": True,
}
PCM_FORMAT = {"type": "audio/pcm", "rate": 24000}


def default_session(model: str | None = None, *, expires_in_s: int = 3600) -> dict[str, Any]:
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": ids.session_id(),
        "model": model or DEFAULT_MODEL,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
        "audio": {
            "input": {
                "format": dict(PCM_FORMAT),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": dict(SERVER_VAD_DEFAULTS),
            },
            "output": {"format": dict(PCM_FORMAT), "voice": DEFAULT_VOICE, "speed": 1.0},
        },
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "include": None,
        "expires_at": int(time.time()) + expires_in_s,
    }


def transcription_session_view(session: dict[str, Any]) -> dict[str, Any]:
    """The wire shape of a ``type: "transcription"`` session (no response fields)."""
    audio_in = session["audio"]["input"]
    return {
        "type": "transcription",
        "object": "realtime.transcription_session",
        "id": session["id"],
        "audio": {"input": copy.deepcopy(audio_in)},
        "include": session.get("include"),
        "expires_at": session["expires_at"],
    }


# --- checks ---------------------------------------------------------------


def _check_number(value: Any, lo: float, hi: float, param: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise invalid_value(
            f"Invalid '{param}': expected a number between {lo} and {hi}, got {value!r}.", param
        )


def _check_int(value: Any, lo: int, hi: int, param: str, nullable: bool = False) -> None:
    if value is None and nullable:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise invalid_value(
            f"Invalid '{param}': expected an integer between {lo} and {hi}, got {value!r}.", param
        )


def _check_bool(value: Any, param: str) -> None:
    if not isinstance(value, bool):
        raise invalid_value(f"Invalid '{param}': expected a boolean, got {value!r}.", param)


def check_format(fmt: Any, param: str) -> dict[str, Any]:
    if not isinstance(fmt, dict):
        raise invalid_value(f"Invalid '{param}': expected an object.", param)
    kind = fmt.get("type", "audio/pcm")
    if kind not in FORMAT_TYPES:
        raise invalid_value(
            f"Invalid '{param}.type': {kind!r}. Supported values are: {', '.join(FORMAT_TYPES)}.",
            f"{param}.type",
        )
    if kind == "audio/pcm":
        if fmt.get("rate", 24000) != 24000:
            raise invalid_value(f"Invalid '{param}.rate': only 24000 is supported.", f"{param}.rate")
        return dict(PCM_FORMAT)
    return {"type": kind}


def check_output_modalities(value: Any, param: str) -> list[str]:
    if value not in (["audio"], ["text"]):
        raise invalid_value(f'Invalid \'{param}\': expected ["audio"] or ["text"], got {value!r}.', param)
    return list(value)


def check_max_output_tokens(value: Any, param: str) -> int | str:
    if value == "inf":
        return value
    _check_int(value, 1, 4096, param)
    return value


def check_tools(value: Any, param: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise invalid_value(f"Invalid '{param}': expected an array of tools.", param)
    tools = []
    for i, tool in enumerate(value):
        p = f"{param}[{i}]"
        if not isinstance(tool, dict):
            raise invalid_value(f"Invalid '{p}': expected an object.", p)
        kind = tool.get("type", "function")
        if kind == "mcp":
            tools.append(check_mcp_tool(tool, p))
            continue
        if kind != "function":
            raise invalid_value(
                f"Invalid '{p}.type': {kind!r}. Supported values are: function, mcp.", f"{p}.type"
            )
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise missing_parameter(f"{p}.name")
        params = tool.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise invalid_value(
                f"Invalid '{p}.parameters': expected a JSON Schema object.", f"{p}.parameters"
            )
        tools.append(
            {
                "type": "function",
                "name": name,
                "description": tool.get("description") or "",
                "parameters": params or {"type": "object", "properties": {}},
            }
        )
    return tools


def _check_tool_filter(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid_value(f"Invalid '{param}': expected an object.", param)
    out: dict[str, Any] = {}
    if value.get("tool_names") is not None:
        out["tool_names"] = _string_list(value["tool_names"], f"{param}.tool_names")
    if value.get("read_only") is not None:
        _check_bool(value["read_only"], f"{param}.read_only")
        out["read_only"] = value["read_only"]
    return out


def check_mcp_tool(tool: dict[str, Any], param: str) -> dict[str, Any]:
    """A ``type: "mcp"`` tool (openai-python's ``realtime_tools_config_union.Mcp``)."""
    label = tool.get("server_label")
    if not isinstance(label, str) or not label:
        raise missing_parameter(f"{param}.server_label")
    if tool.get("connector_id") is not None:
        raise ProtocolError(
            "unsupported_tool",
            f"Invalid '{param}.connector_id': OpenAI connectors are hosted by OpenAI; give a server_url.",
            f"{param}.connector_id",
        )
    url = tool.get("server_url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise invalid_value(
            f"Invalid '{param}.server_url': expected an http(s) URL of an MCP server.", f"{param}.server_url"
        )
    out: dict[str, Any] = {"type": "mcp", "server_label": label, "server_url": url}
    for key in ("server_description", "authorization"):
        if tool.get(key) is not None:
            if not isinstance(tool[key], str):
                raise invalid_value(f"Invalid '{param}.{key}': expected a string.", f"{param}.{key}")
            out[key] = tool[key]
    headers = tool.get("headers")
    if headers is not None:
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise invalid_value(
                f"Invalid '{param}.headers': expected string keys and values.", f"{param}.headers"
            )
        out["headers"] = dict(headers)
    allowed = tool.get("allowed_tools")
    if allowed is not None:
        out["allowed_tools"] = (
            _string_list(allowed, f"{param}.allowed_tools")
            if isinstance(allowed, list)
            else _check_tool_filter(allowed, f"{param}.allowed_tools")
        )
    approval = tool.get("require_approval")
    if approval is not None:
        if isinstance(approval, dict):
            out["require_approval"] = {
                verdict: _check_tool_filter(approval[verdict], f"{param}.require_approval.{verdict}")
                for verdict in ("always", "never")
                if approval.get(verdict) is not None
            }
        elif approval in ("always", "never"):
            out["require_approval"] = approval
        else:
            raise invalid_value(
                f"Invalid '{param}.require_approval': expected 'always', 'never' or a filter object.",
                f"{param}.require_approval",
            )
    return out


def check_tool_choice(value: Any, param: str) -> Any:
    if value in ("auto", "none", "required"):
        return value
    if isinstance(value, dict) and value.get("type") == "function" and isinstance(value.get("name"), str):
        return {"type": "function", "name": value["name"]}
    if isinstance(value, dict) and value.get("type") == "mcp" and isinstance(value.get("server_label"), str):
        choice = {"type": "mcp", "server_label": value["server_label"]}
        if value.get("name") is not None:
            if not isinstance(value["name"], str):
                raise invalid_value(f"Invalid '{param}.name': expected a string.", f"{param}.name")
            choice["name"] = value["name"]
        return choice
    raise invalid_value(
        f"Invalid '{param}': expected 'auto', 'none', 'required', {{\"type\": \"function\", \"name\": …}} "
        f'or {{"type": "mcp", "server_label": …}}.',
        param,
    )


REASONING_EFFORTS = ("minimal", "low", "medium", "high", "xhigh")
TRANSCRIPTION_DELAYS = ("minimal", "low", "medium", "high", "xhigh")


def check_reasoning(value: Any, param: str) -> dict[str, Any] | None:
    """``{"effort": …}`` or null (openai-python's ``RealtimeReasoning``)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid_value(f"Invalid '{param}': expected an object or null.", param)
    effort = value.get("effort")
    if effort is not None and effort not in REASONING_EFFORTS:
        raise invalid_value(
            f"Invalid '{param}.effort': {effort!r}. Supported values are: {', '.join(REASONING_EFFORTS)}.",
            f"{param}.effort",
        )
    return {"effort": effort}


def check_parallel_tool_calls(value: Any, param: str) -> bool | None:
    if value is not None:
        _check_bool(value, param)
    return value  # type: ignore[no-any-return]


def check_truncation(value: Any, param: str) -> Any:
    """``"auto"``, ``"disabled"`` or ``{"type": "retention_ratio", "retention_ratio": 0–1,
    "token_limits": {"post_instructions": n}}`` (openai-python's ``RealtimeTruncation``)."""
    if value in ("auto", "disabled"):
        return value
    if not isinstance(value, dict) or value.get("type") != "retention_ratio":
        raise invalid_value(
            f'Invalid \'{param}\': expected "auto", "disabled" or {{"type": "retention_ratio", …}}.', param
        )
    out: dict[str, Any] = {"type": "retention_ratio"}
    ratio = value.get("retention_ratio")
    if ratio is None:
        raise missing_parameter(f"{param}.retention_ratio")
    _check_number(ratio, 0.0, 1.0, f"{param}.retention_ratio")
    out["retention_ratio"] = ratio
    limits = value.get("token_limits")
    if limits is not None:
        if not isinstance(limits, dict):
            raise invalid_value(
                f"Invalid '{param}.token_limits': expected an object.", f"{param}.token_limits"
            )
        post = limits.get("post_instructions")
        out["token_limits"] = {}
        if post is not None:
            _check_int(post, 0, 10_000_000, f"{param}.token_limits.post_instructions")
            out["token_limits"]["post_instructions"] = post
    return out


def _string_list(value: Any, param: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise invalid_value(f"Invalid '{param}': expected an array of non-empty strings.", param)
    return list(value)


def _turn_detection(value: Any, param: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid_value(f"Invalid '{param}': expected an object or null.", param)
    kind = value.get("type", "server_vad")
    if kind == "server_vad":
        td = dict(SERVER_VAD_DEFAULTS)
    elif kind == "semantic_vad":
        td = dict(SEMANTIC_VAD_DEFAULTS)
    else:
        raise invalid_value(
            f"Invalid '{param}.type': {kind!r}. Supported values are: server_vad, semantic_vad.",
            f"{param}.type",
        )
    for key, v in value.items():
        p = f"{param}.{key}"
        if key == "type" or key not in td:
            continue  # unknown post-GA knobs are accepted and ignored
        if key == "threshold":
            _check_number(v, 0.0, 1.0, p)
        elif key == "prefix_padding_ms":
            _check_int(v, 0, 5000, p)
        elif key == "silence_duration_ms":
            _check_int(v, 0, 10000, p)
        elif key == "idle_timeout_ms":
            _check_int(v, 5000, 30000, p, nullable=True)
        elif key in ("create_response", "interrupt_response"):
            _check_bool(v, p)
        elif key == "eagerness" and v not in ("low", "medium", "high", "auto"):
            raise invalid_value(f"Invalid '{p}': {v!r}. Supported values are: low, medium, high, auto.", p)
        td[key] = v
    return td


def _transcription(value: Any, param: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid_value(f"Invalid '{param}': expected an object or null.", param)
    out: dict[str, Any] = {"model": value.get("model") or "whisper-1"}
    for key in ("language", "prompt"):
        if value.get(key) is not None:
            if not isinstance(value[key], str):
                raise invalid_value(f"Invalid '{param}.{key}': expected a string.", f"{param}.{key}")
            out[key] = value[key]
    # Post-GA fields (openai-python's AudioTranscription): allowed languages, keywords, delay.
    for key in ("languages", "keywords"):
        if value.get(key) is not None:
            out[key] = _string_list(value[key], f"{param}.{key}")
    delay = value.get("delay")
    if delay is not None:
        if delay not in TRANSCRIPTION_DELAYS:
            raise invalid_value(
                f"Invalid '{param}.delay': {delay!r}. Supported values are: {', '.join(TRANSCRIPTION_DELAYS)}.",
                f"{param}.delay",
            )
        out["delay"] = delay
    return out


def _noise_reduction(value: Any, param: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") not in ("near_field", "far_field"):
        raise invalid_value(
            f'Invalid \'{param}\': expected {{"type": "near_field"|"far_field"}} or null.', param
        )
    out: dict[str, Any] = {"type": value["type"]}
    strength = value.get("strength")
    if strength is not None:
        _check_number(strength, 0.0, 1.0, f"{param}.strength")
        out["strength"] = float(strength)
    return out


# --- merge ----------------------------------------------------------------


def apply_update(current: dict[str, Any], update: Any, *, audio_started: bool = False) -> dict[str, Any]:
    """Return a new effective session with ``update`` merged in; raise on bad values.

    Nothing is applied unless the whole update is valid.
    """
    if not isinstance(update, dict):
        raise invalid_value("Invalid 'session': expected an object.", "session")
    kind = update.get("type")
    if kind is None:
        raise missing_parameter("session.type")
    if kind not in ("realtime", "transcription"):
        raise invalid_value(
            f"Invalid 'session.type': {kind!r}. Supported values are: realtime, transcription.",
            "session.type",
        )
    s = copy.deepcopy(current)
    s["type"] = kind

    if "instructions" in update:
        if not isinstance(update["instructions"], str):
            raise invalid_value("Invalid 'session.instructions': expected a string.", "session.instructions")
        s["instructions"] = update["instructions"]
    if "output_modalities" in update:
        s["output_modalities"] = check_output_modalities(
            update["output_modalities"], "session.output_modalities"
        )
    if "tools" in update:
        s["tools"] = check_tools(update["tools"], "session.tools")
    if "tool_choice" in update:
        s["tool_choice"] = check_tool_choice(update["tool_choice"], "session.tool_choice")
    if "max_output_tokens" in update:
        s["max_output_tokens"] = check_max_output_tokens(
            update["max_output_tokens"], "session.max_output_tokens"
        )
    if "model" in update and update["model"] is not None:
        # Both agent SDKs resend the model on every update; accept it as is.
        s["model"] = str(update["model"])
    # Absent until set, so sessions that never use them look as they did before.
    if "reasoning" in update:
        s["reasoning"] = check_reasoning(update["reasoning"], "session.reasoning")
    if "parallel_tool_calls" in update:
        s["parallel_tool_calls"] = check_parallel_tool_calls(
            update["parallel_tool_calls"], "session.parallel_tool_calls"
        )
    if "truncation" in update:
        s["truncation"] = check_truncation(update["truncation"], "session.truncation")
    for key in ("tracing", "prompt", "include"):
        if key in update:
            s[key] = copy.deepcopy(update[key])

    audio = update.get("audio")
    if audio is not None:
        if not isinstance(audio, dict):
            raise invalid_value("Invalid 'session.audio': expected an object.", "session.audio")
        a_in = audio.get("input") or {}
        a_out = audio.get("output") or {}
        si, so = s["audio"]["input"], s["audio"]["output"]
        if "format" in a_in:
            si["format"] = check_format(a_in["format"], "session.audio.input.format")
        if "turn_detection" in a_in:
            si["turn_detection"] = _turn_detection(
                a_in["turn_detection"], "session.audio.input.turn_detection"
            )
        if "transcription" in a_in:
            si["transcription"] = _transcription(a_in["transcription"], "session.audio.input.transcription")
        if "noise_reduction" in a_in:
            si["noise_reduction"] = _noise_reduction(
                a_in["noise_reduction"], "session.audio.input.noise_reduction"
            )
        if "format" in a_out:
            so["format"] = check_format(a_out["format"], "session.audio.output.format")
        if "speed" in a_out and a_out["speed"] is not None:
            _check_number(a_out["speed"], 0.25, 1.5, "session.audio.output.speed")
            so["speed"] = float(a_out["speed"])
        if "voice" in a_out and a_out["voice"] is not None:
            voice = a_out["voice"]
            if isinstance(voice, dict):
                voice = voice.get("id")
            if not isinstance(voice, str) or not voice:
                raise invalid_value(
                    "Invalid 'session.audio.output.voice': expected a voice name.",
                    "session.audio.output.voice",
                )
            if audio_started and voice != so["voice"]:
                raise ProtocolError(
                    "cannot_update_voice",
                    "Cannot update a conversation's voice if assistant audio is present.",
                    "session.audio.output.voice",
                )
            so["voice"] = voice
    return s


def wire_session(session: dict[str, Any]) -> dict[str, Any]:
    """The session as sent in ``session.created``/``session.updated``."""
    if session.get("type") == "transcription":
        return transcription_session_view(session)
    return copy.deepcopy(session)
