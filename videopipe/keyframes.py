"""Keyframe choice on the shared analysis pass.

Every frame that `CutDetector` releases is scored as it passes:

- sharpness: variance of the Laplacian of the small luma plane (blur and fades score low),
- stillness: a frame that differs little from the one before is less likely to be motion-blurred,
- representativeness, at the end of the scene: distance of the frame's 16x9 thumbnail from the scene's
  mean thumbnail (a frame in the middle of a flash or of a passing obstruction is far from it).

Frames within ``guard_s`` of a cut (either side) are the blended or half-decoded ones; they are picked only
when a scene has nothing else. Frames inside a dissolve or fade (`SceneFrame.in_transition`) are never picked
while the scene has any other frame. Only a few candidates per time slot are kept, so memory does not grow with
the length of a scene. A scene gets one keyframe plus one per ``extra_every_s`` of its length (spread evenly
across it), and the whole video stays within ``max_total`` by taking extras away from the scenes that have
the most, never a scene's last one.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from videopipe.config import KeyframeSettings
from videopipe.media.decode import box_halve, halvings_for
from videopipe.scenes import Scene, SceneFrame

_THUMB = (16, 9)
_GUARD_PENALTY = 100.0
_CANDIDATES_PER_SLOT = 3
_SLOTS_PER_EXTRA = 4


@dataclass(slots=True, order=True)
class _Candidate:
    quality: float
    pts: int = field(compare=False)
    t_s: float = field(compare=False)
    thumb: np.ndarray = field(compare=False, repr=False)


@dataclass(slots=True)
class Keyframe:
    pts: int
    t_s: float
    scene_index: int
    score: float


@dataclass(slots=True)
class _SceneState:
    start_s: float
    slots: dict[int, list[_Candidate]] = field(default_factory=dict)
    thumb_sum: np.ndarray | None = None
    thumbs: int = 0


def sharpness(luma: np.ndarray) -> float:
    """Variance of the Laplacian, on a plane of at most ~200 px wide (cheap, and resolution-independent)."""
    small = box_halve(luma, halvings_for(luma.shape[1], 1, 200))
    _, std = cv2.meanStdDev(cv2.Laplacian(small, cv2.CV_16S))
    return float(std[0, 0]) ** 2


class KeyframeSelector:
    def __init__(self, settings: KeyframeSettings | None = None) -> None:
        self.settings = settings or KeyframeSettings()
        self._slot_s = self.settings.extra_every_s / _SLOTS_PER_EXTRA
        self._scenes: dict[int, _SceneState] = {}

    def push(self, sf: SceneFrame) -> None:
        if sf.new_scene:
            self._scenes[sf.scene_index] = _SceneState(sf.frame.t_s)
        state = self._scenes[sf.scene_index]
        in_guard = sf.frame.t_s - state.start_s < self.settings.guard_s
        thumb = cv2.resize(sf.frame.luma, _THUMB, interpolation=cv2.INTER_AREA)
        quality = math.log1p(sharpness(sf.frame.luma)) - 0.5 * math.log1p(sf.change)
        if sf.in_transition:
            quality -= 2 * _GUARD_PENALTY
        elif in_guard:
            quality -= _GUARD_PENALTY
        else:
            state.thumb_sum = thumb.astype(np.float32) if state.thumb_sum is None else state.thumb_sum + thumb
            state.thumbs += 1
        slot = state.slots.setdefault(int((sf.frame.t_s - state.start_s) // self._slot_s), [])
        cand = _Candidate(quality, sf.frame.pts, sf.frame.t_s, thumb)
        if len(slot) < _CANDIDATES_PER_SLOT:
            heapq.heappush(slot, cand)
        elif cand.quality > slot[0].quality:
            heapq.heapreplace(slot, cand)

    def select(self, scenes: list[Scene], forced: Sequence[tuple[int, float, float]] = ()) -> list[Keyframe]:
        """The keyframes of `scenes`. `forced` (pts, time, score): frames that must be keyframes (each state of
        a slide, videopipe.perception.slides); in a scene that has any, they replace the scene's own picks."""
        counts = self._counts(scenes)
        chosen: list[Keyframe] = []
        by_scene = _forced_by_scene(scenes, forced)
        for scene in scenes:
            chosen.extend(by_scene.get(scene.index) or self._pick(scene, counts[scene.index]))
        chosen.sort(key=lambda k: k.pts)
        return chosen

    def _counts(self, scenes: list[Scene]) -> dict[int, int]:
        s = self.settings
        counts = {sc.index: min(s.max_per_scene, 1 + int((sc.end_s - sc.start_s) // s.extra_every_s)) for sc in scenes}
        excess = sum(counts.values()) - max(s.max_total, len(scenes))
        if excess > 0:
            # Take extras from the scenes with the most keyframes first (ties: the shortest scene).
            heap = [(-n, sc.end_s - sc.start_s, sc.index) for sc in scenes if (n := counts[sc.index]) > 1]
            heapq.heapify(heap)
            while excess > 0 and heap:
                neg, dur, idx = heapq.heappop(heap)
                counts[idx] -= 1
                excess -= 1
                if counts[idx] > 1:
                    heapq.heappush(heap, (neg + 1, dur, idx))
        return counts

    def _pick(self, scene: Scene, count: int) -> list[Keyframe]:
        state = self._scenes.get(scene.index)
        if state is None:
            return []
        candidates = [c for slot in state.slots.values() for c in slot]
        if not candidates:
            return []
        mean = state.thumb_sum / state.thumbs if state.thumb_sum is not None and state.thumbs else None
        end_guard = scene.end_s - self.settings.guard_s

        def final(c: _Candidate) -> float:
            score = c.quality
            if mean is not None:
                score -= 0.03 * float(np.abs(c.thumb.astype(np.float32) - mean).mean())
            if c.t_s >= end_guard:
                score -= _GUARD_PENALTY
            return score

        span = max(scene.end_s - scene.start_s, 1e-9)
        picks: list[Keyframe] = []
        for part in range(count):
            lo = scene.start_s + span * part / count
            hi = scene.start_s + span * (part + 1) / count
            in_part = [c for c in candidates if lo <= c.t_s < hi or (part == count - 1 and c.t_s >= hi)]
            if not in_part:
                continue
            best = max(in_part, key=final)
            picks.append(Keyframe(best.pts, best.t_s, scene.index, round(final(best), 3)))
        if not picks:  # every candidate fell outside the parts (rounding at tiny scenes)
            best = max(candidates, key=final)
            picks.append(Keyframe(best.pts, best.t_s, scene.index, round(final(best), 3)))
        return picks


def _forced_by_scene(scenes: list[Scene], forced: Sequence[tuple[int, float, float]]) -> dict[int, list[Keyframe]]:
    """Forced keyframes grouped by the scene whose span holds their time (one per pts)."""
    out: dict[int, list[Keyframe]] = {}
    seen: set[int] = set()
    for pts, t_s, score in forced:
        scene = next((sc for sc in scenes if sc.start_s <= t_s < sc.end_s), scenes[-1] if scenes else None)
        if scene is not None and pts not in seen:
            seen.add(pts)
            out.setdefault(scene.index, []).append(Keyframe(pts, t_s, scene.index, score))
    return out
