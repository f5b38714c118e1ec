"""Input noise suppression for ``audio.input.noise_reduction``: the WebRTC audio processing module.

The same APM binding ``parley talk`` uses for echo cancellation (LiveKit's
``rtc.AudioProcessingModule``, PyPI ``livekit``), here with only its noise
suppressor and high-pass filter. It runs at 48 kHz (an exact 2× of the
protocol rate; the APM's native rates are 16/32/48 kHz) in 10 ms frames,
streaming, so a block out has the length of the block in, after a fixed
start-up delay of a few milliseconds.

``near_field`` (headset) and ``far_field`` (laptop, room) get the same
suppressor: adding the APM's automatic gain control for ``far_field`` was
measured to raise the noise between words with the speech (white noise at
0 dB SNR: estimated output SNR -4.9 dB with AGC, +10.1 dB without). The
binding exposes no suppression level, so ``strength`` is echoed, not applied.
"""

from __future__ import annotations

import numpy as np

from parley.protocol.audio_formats import CANONICAL_RATE, Resampler

APM_RATE = 48_000
APM_FRAME = APM_RATE // 100  # the APM processes exactly 10 ms frames


class NoiseSuppressor:
    """``suppressor(block) -> block``: 24 kHz int16 in and out, same length."""

    def __init__(self, kind: str = "near_field") -> None:
        from livekit import rtc

        self.kind = kind
        self._rtc = rtc
        self._apm = rtc.AudioProcessingModule(noise_suppression=True, high_pass_filter=True)
        self._up = Resampler(CANONICAL_RATE, APM_RATE, quality="MQ")
        self._down = Resampler(APM_RATE, CANONICAL_RATE, quality="MQ")
        self._pending_in = np.zeros(0, np.int16)
        self._pending_out = np.zeros(0, np.int16)

    def __call__(self, pcm: np.ndarray) -> np.ndarray:
        pcm = np.asarray(pcm, np.int16)
        self._pending_in = np.concatenate([self._pending_in, self._up(pcm)])
        frames = len(self._pending_in) // APM_FRAME
        if frames:
            out = []
            for i in range(frames):
                chunk = self._pending_in[i * APM_FRAME : (i + 1) * APM_FRAME]
                frame = self._rtc.AudioFrame(chunk.tobytes(), APM_RATE, 1, APM_FRAME)
                self._apm.process_stream(frame)
                out.append(np.frombuffer(bytes(frame.data), np.int16))
            self._pending_in = self._pending_in[frames * APM_FRAME :]
            self._pending_out = np.concatenate([self._pending_out, self._down(np.concatenate(out))])
        n = len(pcm)
        if len(self._pending_out) < n:  # start-up: the resamplers and framing hold a few ms back
            self._pending_out = np.concatenate(
                [np.zeros(n - len(self._pending_out), np.int16), self._pending_out]
            )
        result, self._pending_out = self._pending_out[:n], self._pending_out[n:]
        return result
