"""Hard-cut detection on the shared analysis pass.

Each frame is reduced to a tiny signature (luma 64-127 px wide plus both chroma planes, box-averaged). The
change score of a frame is the mean absolute difference of its signature from the previous frame's, in 0-255
units, summed over Y, U and V. A frame starts a new scene when its change score

- is at least ``min_change`` (absolute: rules out noise and slow drifts),
- is the largest in a window of ``window_frames`` on each side and ``min_ratio`` times the mean of the others
  (relative: a cut is one sharp spike, camera motion raises every score around it),
- is not a flash: every frame of the window before it must differ from every frame from it on (after a
  flash, a glitch or a passing obstruction the picture comes back),
- comes at least ``min_scene_s`` after the previous cut.

The decision needs ``window_frames`` frames of look-ahead, so `CutDetector` releases frames with that delay,
each tagged with its scene; everything downstream sees scenes as final.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from videopipe.config import SceneSettings
from videopipe.media.decode import AnalysisFrame, box_halve, chroma_halvings, halvings_for

_SIG_LONG_SIDE = 64


@dataclass(slots=True)
class SceneFrame:
    """A frame released by the detector, with the scene it belongs to."""

    frame: AnalysisFrame
    scene_index: int
    new_scene: bool  # first frame of its scene
    change: float  # change score against the previous frame (a cheap motion measure)


@dataclass(slots=True)
class Scene:
    index: int
    start_s: float
    end_s: float
    start_pts: int
    frame_count: int


@dataclass(slots=True)
class _Pending:
    frame: AnalysisFrame
    sig: tuple[np.ndarray, np.ndarray, np.ndarray]
    change: float


def signature(frame: AnalysisFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y, U and V box-averaged by powers of two until the luma's long side is at most 64-127 px."""
    times = halvings_for(frame.luma.shape[1], frame.luma.shape[0], 2 * _SIG_LONG_SIDE - 1)
    chroma_times = chroma_halvings(frame.luma.shape[1], frame.chroma_u.shape[1], times)
    return (
        box_halve(frame.luma, times),
        box_halve(frame.chroma_u, chroma_times),
        box_halve(frame.chroma_v, chroma_times),
    )


def sig_distance(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> float:
    return sum(float(cv2.norm(x, y, cv2.NORM_L1)) / x.size for x, y in zip(a, b, strict=True))


class CutDetector:
    """Streaming hard-cut detector; see the module docstring for the rule."""

    def __init__(self, settings: SceneSettings | None = None) -> None:
        self.settings = settings or SceneSettings()
        self._w = self.settings.window_frames
        # Frames j-w-1 .. j+w around the frame j being decided (j-1 first at the decision point).
        self._pending: deque[_Pending] = deque()
        self._released: deque[_Pending] = deque(maxlen=self._w)  # the last frames released
        self._prev_sig: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._scene_index = -1
        self._last_cut_s = -float("inf")
        self.scenes: list[Scene] = []
        self._last_t_s = 0.0
        self._last_step_s = 0.0

    def push(self, frame: AnalysisFrame) -> Iterator[SceneFrame]:
        sig = signature(frame)
        change = sig_distance(sig, self._prev_sig) if self._prev_sig is not None else 0.0
        self._prev_sig = sig
        self._pending.append(_Pending(frame, sig, change))
        if frame.t_s > self._last_t_s:
            self._last_step_s = frame.t_s - self._last_t_s
        self._last_t_s = frame.t_s
        if len(self._pending) > self._w:
            yield self._release()

    def flush(self) -> Iterator[SceneFrame]:
        while self._pending:
            yield self._release()

    def finish(self, end_s: float | None = None) -> list[Scene]:
        """Close the last scene. `end_s` defaults to the end of the last frame."""
        if self.scenes:
            last = self.scenes[-1]
            last.end_s = end_s if end_s is not None else self._last_t_s + self._last_step_s
            last.end_s = max(last.end_s, last.start_s)
        return self.scenes

    def _release(self) -> SceneFrame:
        cur = self._pending.popleft()
        starts = not self._released or self._is_cut(cur)
        if starts:
            self._scene_index += 1
            if self.scenes:
                self.scenes[-1].end_s = cur.frame.t_s
                self._last_cut_s = cur.frame.t_s
            self.scenes.append(Scene(self._scene_index, cur.frame.t_s, cur.frame.t_s, cur.frame.pts, 0))
        self.scenes[-1].frame_count += 1
        self._released.append(cur)
        return SceneFrame(cur.frame, self._scene_index, starts, cur.change)

    def _is_cut(self, cur: _Pending) -> bool:
        s = self.settings
        score = cur.change
        if score < s.min_change or cur.frame.t_s - self._last_cut_s < s.min_scene_s:
            return False
        others = [p.change for p in self._released] + [p.change for p in self._pending]
        if others:
            if max(others) > score:
                return False
            if score < s.min_ratio * (sum(others) / len(others) + 0.5):
                return False
        # Flash filter: after a flash or a short glitch the picture comes back.
        floor = max(s.min_change, 0.4 * score)
        after = [cur, *self._pending]
        return all(sig_distance(a.sig, b.sig) >= floor for a in self._released for b in after)


def scenes_from_cuts(cut_times_s: list[float], duration_s: float) -> list[tuple[float, float]]:
    """(start, end) spans from a list of cut times (helper for tests and benchmarks)."""
    edges = [0.0, *sorted(cut_times_s), duration_s]
    return list(itertools.pairwise(edges))


def match_cuts(found_s: list[float], truth_s: list[float], tolerance_s: float) -> tuple[int, int, int]:
    """Greedy one-to-one matching of detected cuts to true cuts. Returns (true pos, false pos, false neg)."""
    truth = sorted(truth_s)
    used = [False] * len(truth)
    tp = 0
    for t in sorted(found_s):
        best, best_d = -1, tolerance_s + 1e-9
        for i, u in enumerate(truth):
            if not used[i] and abs(u - t) <= best_d:
                best, best_d = i, abs(u - t)
        if best >= 0:
            used[best] = True
            tp += 1
    return tp, len(found_s) - tp, len(truth) - tp
