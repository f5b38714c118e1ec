"""The microphone path: capture → echo cancellation → local VAD → gating → encoding → the server.

Echo cancellation and the local VAD run in the audio device's thread, at
capture time; the rest runs on the event loop. What is sent never stops while
connected: a muted or gated microphone sends silence, which keeps the
server's audio clock in step with ours (see :meth:`capture_time_of`).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import time
from typing import TYPE_CHECKING, Protocol

import numpy as np

from parley.client.codecs import InputEncoder, dbfs
from parley.client.transport import ConnectionLost
from parley.protocol.audio_formats import CANONICAL_RATE, AudioFormat

if TYPE_CHECKING:
    from parley.client.aec import EchoCanceller
    from parley.client.conversation import Conversation


class SpeechOnsets(Protocol):
    """A local VAD as the microphone uses it (:class:`~parley.client.local_vad.LocalVad`)."""

    def feed(self, pcm: np.ndarray) -> str | None:
        """``"start"`` or ``"stop"`` when speech begins or ends in this block."""
        ...


class Microphone:
    def __init__(self, conv: Conversation) -> None:
        self._conv = conv
        self.aec: EchoCanceller | None = None
        self.vad: SpeechOnsets | None = None
        self.level_db = -120.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[np.ndarray, float]] = asyncio.Queue(maxsize=500)
        self._encoder = InputEncoder(AudioFormat(conv.session_options.input_format))
        self._sent_samples = 0
        self._sent_marks: collections.deque[tuple[int, float]] = collections.deque(maxlen=3000)
        self._level_last = 0.0

    def prepare(self) -> None:
        """Set up the optional stages the options ask for (before the device starts)."""
        self._loop = asyncio.get_running_loop()
        options = self._conv.options
        if options.aec:
            from parley.client.aec import EchoCanceller

            aec = self.aec = EchoCanceller()
            self._conv.player.on_played.append(aec.far)
        if options.local_vad:
            from parley.client.local_vad import LocalVad

            self.vad = LocalVad()

    def device_started(self, output_latency: float, input_latency: float) -> None:
        if self.aec is not None:
            self.aec.set_delay_ms(1000 * (output_latency + input_latency))

    def set_format(self, fmt: AudioFormat) -> None:
        self._encoder = InputEncoder(fmt)

    def reset(self) -> None:
        """A new session starts its audio clock at zero."""
        self._sent_samples = 0
        self._sent_marks.clear()

    # --- the device's thread ---

    def on_capture(self, pcm: np.ndarray, t: float) -> None:
        """Runs in the device's thread: echo cancellation and local VAD happen here, at capture time."""
        conv = self._conv
        if self.aec is not None:
            pcm = self.aec.near(pcm)
        if conv.recorder is not None:
            conv.recorder.mic(pcm)
        if self.vad is not None:
            ev = self.vad.feed(pcm)
            if ev == "start":
                conv.barge_in.local_speech_started()
            if ev is not None and self._loop is not None:
                self._loop.call_soon_threadsafe(conv.barge_in.local_vad_event, ev, t)
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._enqueue, pcm, t)

    def _enqueue(self, pcm: np.ndarray, t: float) -> None:
        if self._queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()  # never let a stalled connection hold the mic back
        self._queue.put_nowait((pcm, t))

    # --- the event loop ---

    async def run(self) -> None:
        conv = self._conv
        while True:
            pcm, t = await self._queue.get()
            now = time.monotonic()
            if now - self._level_last > 0.1:
                self._level_last = now
                self.level_db = dbfs(pcm)
                await conv.notify("mic.level", self.level_db)
            if not conv.connected:
                continue
            if conv.session_options.turn_detection is None and not conv.ptt_active:
                continue  # manual turns: only what is said while the key is held
            # Silence (not nothing) keeps the server's audio clock in step with ours.
            out = np.zeros_like(pcm) if self._gated() else pcm
            self._sent_marks.append((self._sent_samples, t))
            self._sent_samples += len(out)
            try:
                if conv.transport.audio_in_events:
                    data = self._encoder(out)
                    if data:
                        await conv.send(
                            {
                                "type": "input_audio_buffer.append",
                                "audio": base64.b64encode(data).decode("ascii"),
                            }
                        )
                else:
                    conv.transport.send_audio(out)
            except ConnectionLost:
                continue  # the receive loop notices the drop and reconnects

    def _gated(self) -> bool:
        conv = self._conv
        if conv.muted:
            return True
        # Half duplex keeps the mic shut 200 ms past the last played sample: the room's echo tail.
        player = conv.player
        return conv.options.half_duplex and (
            player.is_playing() or time.monotonic() < player.sounding_until() + 0.2
        )

    def capture_time_of(self, audio_ms: float) -> float | None:
        """Monotonic capture time of the input sample at ``audio_ms`` (server offsets → our clock)."""
        sample = audio_ms * CANONICAL_RATE / 1000
        best = None
        for start, t in self._sent_marks:
            if start <= sample:
                best = t + (sample - start) / CANONICAL_RATE
            else:
                break
        return best
