"""Local voice-activity detection on the (echo-cancelled) microphone.

The server's VAD decides turns, but its ``speech_started`` arrives only after
the audio has crossed the network and the server's own detection window. The
local detector runs the same Silero model on the mic as it is captured and
lets the client *pause* playback at once; the server's event then turns the
pause into a flush + truncate, or, if it never comes (a cough, the echo of
the assistant), playback resumes where it stopped.
"""

from __future__ import annotations

import numpy as np

from parley.client.lowlatency import LowLatencyResampler as Resampler
from parley.engine.models.base import VoiceActivityDetector
from parley.protocol.audio_formats import CANONICAL_RATE


class LocalVad:
    """Onset/offset detector over 24 kHz int16 blocks (Silero at 16 kHz, 32 ms frames).

    One speech frame is enough to pause: a false start only costs a short pause
    (playback resumes unless the server confirms), while waiting for a second
    frame adds ~40 ms to every real interruption (measured on Piper speech:
    onset → detected p50 62 ms with one frame, 102 ms with two).
    """

    def __init__(
        self,
        vad: VoiceActivityDetector | None = None,
        *,
        threshold: float = 0.5,
        min_speech_ms: int = 32,
        min_silence_ms: int = 300,
    ) -> None:
        if vad is None:
            # The engine's Silero wrapper (onnxruntime + numpy, no torch) is reused as is.
            from parley.engine.models.vad_silero import SileroVad

            vad = SileroVad()
        self.vad = vad
        self.stream = vad.stream()
        self.threshold = threshold
        self._rs = Resampler(CANONICAL_RATE, vad.sample_rate)
        self._frame = vad.frame_samples
        self._frame_s = self._frame / vad.sample_rate
        self._need_on = max(1, round(min_speech_ms / 1000 / self._frame_s))
        self._need_off = max(1, round(min_silence_ms / 1000 / self._frame_s))
        self._buf = np.zeros(0, np.float32)
        self._run_on = self._run_off = 0
        self.speaking = False
        self.last_prob = 0.0

    def reset(self) -> None:
        self.stream.reset()
        self._buf = np.zeros(0, np.float32)
        self._run_on = self._run_off = 0
        self.speaking = False

    def feed(self, pcm: np.ndarray) -> str | None:
        """Feed one block; returns ``"start"``/``"stop"`` when the state flips in this block."""
        x = self._rs(pcm).astype(np.float32) / 32768.0
        self._buf = np.concatenate([self._buf, x])
        event = None
        while len(self._buf) >= self._frame:
            frame, self._buf = self._buf[: self._frame], self._buf[self._frame :]
            p = self.stream(frame)
            self.last_prob = p
            if p >= self.threshold:
                self._run_on += 1
                self._run_off = 0
            else:
                self._run_off += 1
                self._run_on = 0
            if not self.speaking and self._run_on >= self._need_on:
                self.speaking, event = True, "start"
            elif self.speaking and self._run_off >= self._need_off:
                self.speaking, event = False, "stop"
        return event
