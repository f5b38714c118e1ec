"""The Parley client: a voice conversation with any OpenAI-Realtime-compatible server.

``Conversation`` is the public API (``parley talk`` is built on it); devices turn a
sound card or WAV files into the microphone and the speaker.
"""

from parley.client.conversation import Conversation
from parley.client.devices import FileAudio, NoAudioDeviceError, SoundDeviceAudio, list_devices
from parley.client.options import ClientOptions, Interruption, SessionOptions
from parley.client.transport import TransportError

__all__ = [
    "ClientOptions",
    "Conversation",
    "FileAudio",
    "Interruption",
    "NoAudioDeviceError",
    "SessionOptions",
    "SoundDeviceAudio",
    "TransportError",
    "list_devices",
]
