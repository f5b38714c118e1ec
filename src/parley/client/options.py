"""What a :class:`~parley.client.conversation.Conversation` is asked for, and what it records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from parley.protocol.audio_formats import AudioFormat, FormatType

#: The conversation's states, in the order a turn usually passes through them.
STATES = ("connecting", "listening", "thinking", "speaking", "reconnecting", "closed")


@dataclass
class SessionOptions:
    """The session the client asks for (sent in ``session.update`` on every (re)connection)."""

    model: str = "gpt-realtime"
    voice: str | None = None
    instructions: str | None = None
    #: "server_vad", "semantic_vad", or None for manual turns (push-to-talk).
    turn_detection: str | None = "server_vad"
    create_response: bool = True
    interrupt_response: bool = True
    silence_duration_ms: int | None = None
    #: semantic_vad's eagerness ("low", "medium", "high", "auto"); None leaves the server's default.
    eagerness: str | None = None
    transcription_model: str | None = "whisper-1"
    input_format: FormatType = "audio/pcm"
    output_format: FormatType = "audio/pcm"
    output_modalities: list[str] = field(default_factory=lambda: ["audio"])
    extra: dict[str, Any] = field(default_factory=dict)

    def to_session(self) -> dict[str, Any]:
        td: dict[str, Any] | None = None
        if self.turn_detection:
            td = {
                "type": self.turn_detection,
                "create_response": self.create_response,
                "interrupt_response": self.interrupt_response,
            }
            if self.turn_detection == "server_vad" and self.silence_duration_ms is not None:
                td["silence_duration_ms"] = self.silence_duration_ms
            if self.turn_detection == "semantic_vad" and self.eagerness is not None:
                td["eagerness"] = self.eagerness
        audio_in: dict[str, Any] = {
            "format": AudioFormat(self.input_format).to_json(),
            "turn_detection": td,
            "transcription": {"model": self.transcription_model} if self.transcription_model else None,
        }
        audio_out: dict[str, Any] = {"format": AudioFormat(self.output_format).to_json()}
        if self.voice:
            audio_out["voice"] = self.voice
        s: dict[str, Any] = {
            "type": "realtime",
            "model": self.model,
            "output_modalities": self.output_modalities,
            "audio": {"input": audio_in, "output": audio_out},
        }
        if self.instructions is not None:
            s["instructions"] = self.instructions
        s.update(self.extra)
        return s


@dataclass
class ClientOptions:
    local_vad: bool = False
    #: Resume a locally paused reply if the server does not confirm the barge-in in time.
    local_vad_confirm_s: float = 1.5
    aec: bool = False
    half_duplex: bool = False
    #: Over WebRTC the server truncates from what it sent; also sending our own, smaller,
    #: figure keeps the model's memory equal to what actually reached the speaker.
    truncate_over_webrtc: bool = True
    reconnect: bool = True
    max_reconnect_attempts: int = 20  # ≈3 min with the 10 s cap: rides out a server restart
    reconnect_initial_delay: float = 0.5
    reconnect_max_delay: float = 10.0
    session_timeout: float = 10.0


@dataclass
class Interruption:
    item_id: str
    audio_end_ms: int  # what was sent in conversation.item.truncate
    received_ms: float  # audio received for the item by then
    trigger: str  # "server_vad", "local_vad", "manual"
    detected_at: float  # monotonic time playback was stopped
    speech_started_at: float | None = None  # receipt of the server's speech_started
    cancel_sent: bool = False
    truncated: dict | None = None  # the server's conversation.item.truncated


@dataclass
class Turn:
    role: str
    item_id: str
    text: str = ""
    done: bool = False
    interrupted: bool = False
