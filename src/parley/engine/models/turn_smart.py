"""Smart-turn v3.2: an end-of-turn model that hears whether the speaker has finished.

The ONNX file (BSD-2-Clause, 8.7 MB) ships inside the ``pipecat-ai`` wheel, which
is installed ``--no-deps`` and never imported: pipecat would pull in its whole
framework. The file is found through the distribution's metadata and its sha256
is checked against the pinned release, so a different model can never slip in
under the same name.

The model is a Whisper-encoder classifier. It takes the last 8 s of 16 kHz
speech (zero-padded in front when shorter) as an 80×800 log-mel array and
returns the probability that the turn is complete. Features are computed here
with numpy (see :func:`log_mel_features`); one call costs ~150 ms of one core,
so the session asks it once per pause, never per frame, and in a worker thread.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib.metadata
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from parley.engine.models.errors import ModelUnavailable

DISTRIBUTION = "pipecat-ai"
VERSION = "1.14.0"
MODEL_FILE = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
INSTALL = (
    f".venv/bin/pip install --no-deps {DISTRIBUTION}=={VERSION}  (--no-deps: Parley uses only its model file)"
)

SAMPLE_RATE = 16000
WINDOW_SECONDS = 8
WINDOW_SAMPLES = SAMPLE_RATE * WINDOW_SECONDS

# Whisper's front end: 25 ms windows every 10 ms, 80 mel bands over 0–8 kHz.
_N_FFT = 400
_HOP = 160
_N_MELS = 80


def model_path() -> Path:
    """The pinned smart-turn file; :class:`ModelUnavailable` when absent or altered."""
    try:
        version = importlib.metadata.version(DISTRIBUTION)
        files = importlib.metadata.files(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        raise ModelUnavailable(
            "turn", f"the {DISTRIBUTION} wheel (smart-turn model) is not installed", INSTALL
        ) from None
    if version != VERSION:
        raise ModelUnavailable(
            "turn", f"{DISTRIBUTION} {version} is installed; Parley is pinned to {VERSION}", INSTALL
        )
    entry = next((f for f in files if str(f) == MODEL_FILE), None)
    path = Path(str(entry.locate())) if entry is not None else None
    if path is None or not path.is_file():
        raise ModelUnavailable("turn", f"{MODEL_FILE} is missing from the {DISTRIBUTION} install", INSTALL)
    verify_sha256(path)
    return path


def verify_sha256(path: Path, expected: str = SHA256) -> None:
    """Refuse a model file whose content is not the pinned release's."""
    actual = _sha256(path, path.stat().st_size, path.stat().st_mtime_ns)
    if actual != expected:
        raise ModelUnavailable(
            "turn",
            f"{path} has sha256 {actual}, expected {expected} (smart-turn v3.2 from {DISTRIBUTION}=={VERSION});"
            " refusing to load a different model",
            f"reinstall it: {INSTALL.replace('--no-deps', '--no-deps --force-reinstall')}",
        )


@functools.cache
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    # Cached per (size, mtime): several loads in one process hash the 8.7 MB file once.
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- features ------------------------------------------------------------------------


def _slaney_mel(hz: np.ndarray) -> np.ndarray:
    """Hz → mel on the Slaney scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = 3.0 * hz / 200.0
    log = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) * (27.0 / np.log(6.4))
    return np.where(hz >= 1000.0, log, linear)


def _slaney_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = 200.0 * mel / 3.0
    log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log, linear)


@functools.cache
def _mel_filters() -> np.ndarray:
    """(80, 201) triangular filters, equally spaced in mel, each normalised to unit area."""
    edges = _slaney_hz(
        np.linspace(_slaney_mel(np.array(0.0)), _slaney_mel(np.array(SAMPLE_RATE / 2)), _N_MELS + 2)
    )
    bins = np.linspace(0, SAMPLE_RATE // 2, _N_FFT // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    return triangles * (2.0 / (upper - lower))


@functools.cache
def _window() -> np.ndarray:
    # Periodic Hann (as torch.hann_window): the symmetric window of n+1 points without its last.
    return np.hanning(_N_FFT + 1)[:-1]


def log_mel_features(audio: np.ndarray) -> np.ndarray:
    """Whisper-style log-mel features of exactly 8 s of 16 kHz audio: float32 (80, 800).

    The steps, as the model was trained on them: normalise the waveform to zero
    mean and unit variance; take a centred short-time power spectrum (reflect
    padding of half a window, periodic Hann, 400-point FFT every 160 samples);
    project onto 80 Slaney mel bands; log10 with a floor of 1e-10; drop the
    last frame (801 → 800); clamp to 8 decades below the loudest value; and
    map into roughly [-1, 1] with ``(x + 4) / 4``.
    """
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1 or len(x) != WINDOW_SAMPLES:
        raise ValueError(f"expected {WINDOW_SAMPLES} mono samples, got shape {x.shape}")
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    half = _N_FFT // 2
    padded = np.pad(x.astype(np.float64), (half, half), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, _N_FFT)[::_HOP]
    power = np.abs(np.fft.rfft(frames * _window(), axis=-1)) ** 2  # (801, 201)
    mel = np.maximum(_mel_filters() @ power.T, 1e-10)  # (80, 801)
    log = np.log10(mel)[:, :-1]
    log = np.maximum(log, log.max() - 8.0)
    return ((log + 4.0) / 4.0).astype(np.float32)


def fit_window(audio: np.ndarray) -> np.ndarray:
    """The last 8 s of ``audio``, zero-padded in front when shorter (the model hears the end)."""
    audio = np.asarray(audio, dtype=np.float32)
    if len(audio) >= WINDOW_SAMPLES:
        return audio[-WINDOW_SAMPLES:]
    return np.concatenate([np.zeros(WINDOW_SAMPLES - len(audio), dtype=np.float32), audio])


# --- the model -----------------------------------------------------------------------


class SmartTurn:
    """One shared ONNX session; :meth:`probability` is safe to call from any session."""

    sample_rate = SAMPLE_RATE

    def __init__(self, path: Path | None = None, threads: int = 1) -> None:
        import onnxruntime as ort

        self.model_path = path or model_path()
        verify_sha256(self.model_path)  # also for a path given by hand (hashed once per process)
        opts = ort.SessionOptions()
        # One core: the call is short and Whisper/llama.cpp need the others at that very moment.
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(self.model_path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        self._lock = threading.Lock()  # concurrent calls would only contend for the same core
        # Its own thread, not asyncio's default executor: there, prompt prefills waiting for the
        # language model held every worker under load, and a decision waited until the turn had
        # run into eagerness low's 8 s fallback (soak: 5 of 54 spoken turns).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smart-turn")
        self._executor.submit(lambda: None).result()  # its thread from the start, not mid-session

    def predict(self, audio: np.ndarray) -> float:
        """P(turn complete) for float32 16 kHz speech ending now (blocking; ~150 ms)."""
        features = log_mel_features(fit_window(audio))[None]
        with self._lock:
            (out,) = self._session.run(None, {self._input: features})
        return float(np.asarray(out).reshape(-1)[0])

    async def probability(self, audio: np.ndarray) -> float:
        """:meth:`predict` in a worker thread, so the event loop keeps serving audio."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.predict, audio)

    def warmup(self) -> None:
        self.predict(np.zeros(SAMPLE_RATE, dtype=np.float32))
