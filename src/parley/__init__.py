"""Parley: real-time speech-to-speech voice agents on the OpenAI Realtime protocol."""

__version__ = "0.1.0"
