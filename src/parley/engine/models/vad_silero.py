"""Silero VAD (v5/v6 ONNX) through onnxruntime and numpy — no torch.

One ``InferenceSession`` is shared by every session's stream: the model is
2 MB and stateless apart from the recurrent state, which each
:class:`SileroVadStream` keeps itself together with the 64-sample context
(the previous frame's tail) that the model expects in front of each frame.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from parley.engine.models.assets import silero_model_path

SAMPLE_RATE = 16000
FRAME_SAMPLES = 512  # 32 ms; the only frame size the 16 kHz model accepts
CONTEXT_SAMPLES = 64


class SileroVad:
    """Shared weights; :meth:`stream` hands out independent per-session state."""

    sample_rate = SAMPLE_RATE
    frame_samples = FRAME_SAMPLES

    def __init__(self, model_path: Path | None = None) -> None:
        import onnxruntime as ort

        path = model_path or silero_model_path()
        opts = ort.SessionOptions()
        # One frame is ~80 µs of work: threads would only add hand-off latency
        # and steal cores from Whisper/llama.cpp.
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        self.model_path = path
        self._session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        # InferenceSession.run is thread-safe, but sessions running on different
        # threads at once would just contend for one core; the lock keeps it cheap.
        self._lock = threading.Lock()

    def stream(self) -> SileroVadStream:
        return SileroVadStream(self)

    def _run(self, feed: dict[str, np.ndarray]) -> tuple[float, np.ndarray]:
        with self._lock:
            prob, new_state = self._session.run(None, feed)
        return float(prob[0, 0]), new_state

    def warmup(self) -> None:
        s = self.stream()
        for _ in range(3):
            s(np.zeros(FRAME_SAMPLES, dtype=np.float32))


class SileroVadStream:
    """Recurrent state + context of one audio stream."""

    def __init__(self, vad: SileroVad) -> None:
        self._vad = vad
        self._input = np.zeros((1, CONTEXT_SAMPLES + FRAME_SAMPLES), dtype=np.float32)
        # One feed dict per stream, updated in place: a frame is only ~100 µs,
        # so per-call allocations show.
        self._feed: dict[str, np.ndarray] = {
            "input": self._input,
            "state": np.zeros((2, 1, 128), dtype=np.float32),
            "sr": vad._sr,
        }

    def __call__(self, frame: np.ndarray) -> float:
        if frame.shape != (FRAME_SAMPLES,):
            raise ValueError(f"VAD frame must have {FRAME_SAMPLES} samples, got {frame.shape}")
        buf = self._input
        # Input = previous 64 samples + this frame; reusing one buffer avoids a
        # concatenate per frame.
        buf[0, CONTEXT_SAMPLES:] = frame
        prob, self._feed["state"] = self._vad._run(self._feed)
        buf[0, :CONTEXT_SAMPLES] = buf[0, -CONTEXT_SAMPLES:]
        return prob

    def reset(self) -> None:
        self._input.fill(0.0)
        self._feed["state"] = np.zeros((2, 1, 128), dtype=np.float32)
