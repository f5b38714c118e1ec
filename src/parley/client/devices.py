"""Audio devices: sound cards through sounddevice, and WAV files that run in real time.

Every device speaks canonical audio to the rest of the client (24 kHz int16
mono, 20 ms blocks): the microphone calls ``on_mic(block, capture_time)`` from
the device's thread, and the speaker pulls blocks from a :class:`Player` with
the monotonic time at which they will be heard. Devices that cannot open at
24 kHz run at their own rate and are resampled with soxr.

:class:`FileAudio` is a duplex "sound card" made of files: one clock thread
reads a mic block from ``--input-wav`` and writes a speaker block to
``--output-wav`` every 20 ms, exactly like a callback-driven device, so the
whole client (barge-in timing included) runs unchanged in scripts and tests.
It can also simulate the speaker→mic echo path, which is how echo
cancellation is tested without hardware.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from parley.client.player import Player
from parley.client.wavio import WavWriter, read_wav
from parley.protocol.audio_formats import CANONICAL_RATE, Resampler

log = logging.getLogger(__name__)

BLOCK_MS = 20
BLOCK = CANONICAL_RATE * BLOCK_MS // 1000  # 480 samples
MAX_LAG_BLOCKS = 3  # a file clock later than this re-anchors instead of catching up

MicCallback = Callable[[np.ndarray, float], None]

NO_DEVICE_HELP = (
    "No audio device found (PortAudio sees no {what}).\n"
    "  • On a desktop: plug in a microphone/headset, and check that PulseAudio/PipeWire is running\n"
    "    and that this user may open /dev/snd (e.g. member of the 'audio' group).\n"
    "  • In a container or over SSH there is usually no sound card: talk through files instead,\n"
    "    e.g.  parley talk --input-wav question.wav --output-wav answer.wav\n"
    "  • `parley talk --list-devices` shows what PortAudio can see."
)


class NoAudioDeviceError(RuntimeError):
    pass


class AudioDevice(Protocol):
    rate: int
    output_latency: float  # seconds from handing a block over to hearing it
    input_latency: float

    def start(self, player: Player, on_mic: MicCallback) -> None: ...

    def stop(self) -> None: ...


@dataclass
class BlockLog:
    """Speaker-side log kept by file devices: when each block was played and whether it was silent."""

    times: collections.deque[float]
    silent: collections.deque[bool]


class FileAudio:
    """Duplex device backed by WAV files (or silence / a null sink), clocked in real time."""

    def __init__(
        self,
        input_wav: str | Path | None = None,
        output_wav: str | Path | None = None,
        *,
        realtime: bool = True,
        lead_silence_s: float = 0.0,
        echo_gain: float = 0.0,
        echo_delay_ms: float = 60.0,
        speed: float = 1.0,
    ) -> None:
        self.rate = CANONICAL_RATE
        self.output_latency = 0.0  # a file sample is "heard" the moment it is written
        self.input_latency = 0.0
        self.realtime = realtime
        self.speed = speed
        mic = read_wav(input_wav) if input_wav else np.zeros(0, np.int16)
        lead = np.zeros(int(lead_silence_s * CANONICAL_RATE), np.int16)
        self._mic = np.concatenate([lead, mic])
        self._mic_pos = 0
        self.output_path = Path(output_wav) if output_wav else None
        self._writer: WavWriter | None = None
        self._inject: collections.deque[tuple[np.ndarray, Callable[[float], None] | None]] = (
            collections.deque()
        )
        self._inject_cur: np.ndarray | None = None
        self._inject_pos = 0
        self._lock = threading.Lock()
        self._echo_gain = echo_gain
        self._echo_delay = int(echo_delay_ms * CANONICAL_RATE / 1000)
        self._echo_buf = np.zeros(self._echo_delay + BLOCK, np.int16)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.input_finished = threading.Event()
        self.samples_written = 0
        self.log = BlockLog(collections.deque(maxlen=100_000), collections.deque(maxlen=100_000))
        self.error: BaseException | None = None

    # --- scripted input -------------------------------------------------------------

    def inject(self, pcm: np.ndarray, on_start: Callable[[float], None] | None = None) -> None:
        """Mix ``pcm`` into the microphone from the next block on (scripted speech).

        ``on_start(t)`` is called with the capture time of its first sample: the
        speech onset for latency measurements.
        """
        with self._lock:
            self._inject.append((np.asarray(pcm, np.int16), on_start))

    @property
    def injecting(self) -> bool:
        return self._inject_cur is not None or bool(self._inject)

    def _next_mic_block(self, t: float) -> np.ndarray:
        block = np.zeros(BLOCK, np.int32)
        if self._mic_pos < len(self._mic):
            chunk = self._mic[self._mic_pos : self._mic_pos + BLOCK]
            block[: len(chunk)] += chunk
            self._mic_pos += BLOCK
            if self._mic_pos >= len(self._mic):
                self.input_finished.set()
        else:
            self.input_finished.set()
        filled = 0
        with self._lock:
            while filled < BLOCK:
                if self._inject_cur is None:
                    if not self._inject:
                        break
                    self._inject_cur, cb = self._inject.popleft()
                    self._inject_pos = 0
                    if cb is not None:
                        cb(t + filled / CANONICAL_RATE)
                take = min(BLOCK - filled, len(self._inject_cur) - self._inject_pos)
                block[filled : filled + take] += self._inject_cur[self._inject_pos : self._inject_pos + take]
                self._inject_pos += take
                filled += take
                if self._inject_pos >= len(self._inject_cur):
                    self._inject_cur = None
        return np.clip(block, -32768, 32767).astype(np.int16)

    # --- clock ------------------------------------------------------------------------

    def start(self, player: Player, on_mic: MicCallback) -> None:
        if self.output_path is not None:
            self._writer = WavWriter(self.output_path, CANONICAL_RATE)
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(player, on_mic), name="parley-file-audio", daemon=True
        )
        self._thread.start()

    def _run(self, player: Player, on_mic: MicCallback) -> None:
        period = BLOCK / CANONICAL_RATE / self.speed
        t0 = time.monotonic()
        k = 0
        try:
            while not self._stop.is_set():
                deadline = t0 + k * period
                if self.realtime:
                    delay = deadline - time.monotonic()
                    if delay > 0:
                        self._stop.wait(delay)
                        if self._stop.is_set():
                            break
                    elif -delay > MAX_LAG_BLOCKS * period:
                        # Starved of CPU: skip the lost time, as a sound card under-runs, rather
                        # than catch up by playing blocks back to back. Catching up drained
                        # seconds of reply in a burst stamped "now", shorter than the state
                        # ticker's period: the client could miss its own playback start.
                        t0 -= delay
                        deadline = t0 + k * period
                now = time.monotonic() if not self.realtime else max(deadline, time.monotonic())
                # Speaker first: the block written now is what a real card would be playing
                # while this mic block is captured (what the echo path needs).
                out = player.read(BLOCK, now)
                if self._writer is not None:
                    self._writer.write(out)
                self.samples_written += len(out)
                self.log.times.append(now)
                self.log.silent.append(not out.any())
                mic = self._next_mic_block(now)
                if self._echo_gain > 0:
                    self._echo_buf = np.concatenate([self._echo_buf[BLOCK:], out])
                    echo = self._echo_buf[:BLOCK].astype(np.float32) * self._echo_gain
                    mic = np.clip(mic.astype(np.float32) + echo, -32768, 32767).astype(np.int16)
                on_mic(mic, now)
                k += 1
        except BaseException as exc:  # the clock must never die silently
            log.exception("file audio clock failed")
            self.error = exc

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        if self._writer is not None:
            self._writer.close()

    def first_silent_after(self, t: float) -> float | None:
        """Time of the first silent speaker block at or after ``t`` (barge-in measurements)."""
        for bt, silent in zip(list(self.log.times), list(self.log.silent), strict=False):
            if bt >= t - 1e-9 and silent:
                return bt
        return None


# --- sound cards -------------------------------------------------------------------------


def _sd():
    try:
        import sounddevice as sd
    except OSError as exc:  # libportaudio missing
        raise NoAudioDeviceError(
            f"PortAudio is not available ({exc}). Install it (Debian/Ubuntu: apt-get install libportaudio2) "
            "or use --input-wav/--output-wav."
        ) from exc
    return sd


def list_devices() -> str:
    sd = _sd()
    devices = sd.query_devices()
    if not len(devices):
        raise NoAudioDeviceError(NO_DEVICE_HELP.format(what="devices at all"))
    lines = []
    default_in, default_out = sd.default.device
    for i, d in enumerate(devices):
        mark = ("<" if i == default_in else " ") + (">" if i == default_out else " ")
        lines.append(
            f"{mark} {i:3d}  {d['name']}  (in {d['max_input_channels']}, out {d['max_output_channels']}, "
            f"{int(d['default_samplerate'])} Hz)"
        )
    lines.append("  < default input, > default output")
    return "\n".join(lines)


def _pick(sd, device: int | str | None, kind: str) -> tuple[int, dict]:
    devices = sd.query_devices()
    key = "max_input_channels" if kind == "input" else "max_output_channels"
    if not any(d[key] > 0 for d in devices):
        raise NoAudioDeviceError(NO_DEVICE_HELP.format(what=f"{kind} devices"))
    try:
        info = sd.query_devices(device, kind=kind)
    except (ValueError, sd.PortAudioError) as exc:
        raise NoAudioDeviceError(
            f"Audio {kind} device {device!r} is not usable: {exc}\n" + list_devices()
        ) from exc
    return int(info["index"]), info


def _supported_rate(sd, index: int, info: dict, kind: str) -> int:
    """24 kHz when the device takes it (no resampling), else its own default rate."""
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    for rate in (CANONICAL_RATE, int(info["default_samplerate"]), 48000, 44100, 16000):
        try:
            check(device=index, samplerate=rate, channels=1, dtype="int16")
            return rate
        except Exception:
            continue
    raise NoAudioDeviceError(f"{kind} device {info['name']!r} accepts none of the usual sample rates")


class _PullResampler:
    """Turns the player's 24 kHz blocks into any number of device-rate samples."""

    def __init__(self, player: Player, rate: int) -> None:
        self.player, self.rate = player, rate
        self._rs = Resampler(CANONICAL_RATE, rate)
        self._fifo = np.zeros(0, np.int16)

    def read(self, n: int, dac_time: float) -> np.ndarray:
        while len(self._fifo) < n:
            # Samples already waiting in the FIFO play before the block we pull now.
            t = dac_time + len(self._fifo) / self.rate
            block = self.player.read(BLOCK // 2, t)
            self._fifo = np.concatenate([self._fifo, self._rs(block)])
        out, self._fifo = self._fifo[:n], self._fifo[n:]
        return out


class SoundDeviceAudio:
    """Microphone + speaker through PortAudio (sounddevice), resampled to 24 kHz when needed."""

    def __init__(
        self,
        input_device: int | str | None = None,
        output_device: int | str | None = None,
        *,
        use_input: bool = True,
        use_output: bool = True,
    ) -> None:
        self.sd = _sd()
        self.rate = CANONICAL_RATE
        self.output_latency = 0.0
        self.input_latency = 0.0
        self.use_input, self.use_output = use_input, use_output
        self.in_index = self.out_index = -1
        if use_input:
            self.in_index, self.in_info = _pick(self.sd, input_device, "input")
            self.in_rate = _supported_rate(self.sd, self.in_index, self.in_info, "input")
        if use_output:
            self.out_index, self.out_info = _pick(self.sd, output_device, "output")
            self.out_rate = _supported_rate(self.sd, self.out_index, self.out_info, "output")
        self._streams: list = []

    def describe(self) -> str:
        parts = []
        if self.use_input:
            parts.append(f"mic: {self.in_info['name']} @ {self.in_rate} Hz")
        if self.use_output:
            parts.append(f"speaker: {self.out_info['name']} @ {self.out_rate} Hz")
        return ", ".join(parts)

    def start(self, player: Player, on_mic: MicCallback) -> None:
        sd = self.sd
        if self.use_output:
            pull = _PullResampler(player, self.out_rate) if self.out_rate != CANONICAL_RATE else None

            def out_cb(outdata, frames, tinfo, status) -> None:
                # PortAudio reports when this buffer reaches the DAC; convert to our monotonic clock.
                latency = max(0.0, tinfo.outputBufferDacTime - tinfo.currentTime)
                self.output_latency = latency
                dac = time.monotonic() + latency
                block = pull.read(frames, dac) if pull else player.read(frames, dac)
                outdata[:, 0] = block

            out = sd.OutputStream(
                device=self.out_index,
                samplerate=self.out_rate,
                channels=1,
                dtype="int16",
                blocksize=int(self.out_rate * BLOCK_MS / 1000),
                latency="low",
                callback=out_cb,
            )
            self._streams.append(out)
        if self.use_input:
            rs = Resampler(self.in_rate, CANONICAL_RATE)
            pending = [np.zeros(0, np.int16)]

            def in_cb(indata, frames, tinfo, status) -> None:
                latency = max(0.0, tinfo.currentTime - tinfo.inputBufferAdcTime)
                self.input_latency = latency
                pcm = np.concatenate([pending[0], rs(indata[:, 0].copy())])
                t = time.monotonic() - latency
                while len(pcm) >= BLOCK:
                    on_mic(pcm[:BLOCK], t)
                    pcm = pcm[BLOCK:]
                pending[0] = pcm

            inp = sd.InputStream(
                device=self.in_index,
                samplerate=self.in_rate,
                channels=1,
                dtype="int16",
                blocksize=int(self.in_rate * BLOCK_MS / 1000),
                latency="low",
                callback=in_cb,
            )
            self._streams.append(inp)
        for s in self._streams:
            s.start()
        if self.use_output:
            self.output_latency = float(self._streams[0].latency)

    def stop(self) -> None:
        for s in self._streams:
            try:
                s.stop()
                s.close()
            except Exception:  # closing a dead device must not block shutdown
                log.debug("closing audio stream failed", exc_info=True)
        self._streams.clear()


class NullAudio(FileAudio):
    """No microphone, no speaker (text-only sessions); still clocked so playback bookkeeping works."""

    def __init__(self) -> None:
        super().__init__(None, None)
