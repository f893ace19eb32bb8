"""Slide changes inside a scene: static content (slides, screen recordings, whiteboards) whose template stays
the same while the words change, found on the shared analysis pass (no decode of its own).

A hard-cut detector sees one scene in a deck whose slides share a title bar, a background and a logo: only a
few per cent of the picture changes. This consumer watches the analysis luma instead:

- **settled**: the picture has not changed (fewer than ``stable_area`` of its pixels moved by more than
  ``pixel_delta`` from one frame to the next; a mouse pointer stays below that) for ``settle_s``;
- **a change**: a settled picture differs from the last settled one (the reference) on at least
  ``min_change_area`` of its pixels, and the way between them took at most ``max_transition_s`` (a cut, a
  fade or an animation; a person moving or a video playing takes longer and is no slide change);
- **busy regions left out**: pixels that keep changing (a speaker's video inset, a clip playing on a slide)
  are left out of every count for the rest of the scene, so the rest of the slide can still settle and change;
- **static content only**: the reference must be mostly flat (``min_flat_area`` of its pixels with a small
  local gradient), as slides and screens are and camera footage is not;
- **a build-up step or a new slide**: a step only adds: the changed pixels lie where the reference showed
  plain background. When more than ``max_removed_share`` of them were ink (text or drawing edges) in the
  reference, something was replaced or taken away: a new slide.

A new slide becomes a scene boundary (a chapter candidate) at the first frame that differed; every settled
state of a scene that changed, new slide or build-up step, gets a keyframe (the frame at which it counts as
settled, so no keyframe is taken inside a fade). Build-up steps closer together than ``min_build_gap_s``
(typing, a pointer drawing) keep only the last, fullest state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from videopipe.config import SlideSettings
from videopipe.keyframes import Keyframe, sharpness
from videopipe.scenes import Scene, SceneFrame

_KERNEL = np.ones((3, 3), np.uint8)
_BUSY_KERNEL = np.ones((11, 11), np.uint8)


@dataclass(slots=True)
class SlideChange:
    t_s: float  # the first frame that differed from the previous settled picture (a fade's start)
    pts: int
    kind: str  # "slide" (a new slide: scene boundary) or "build" (content added: a keyframe only)
    scene_index: int  # the cut detector's scene it happened in
    frames_before: int  # frames of that scene before it (to split the scene's frame count)
    changed_area: float  # share of the picture that changed
    removed_share: float  # share of the changed pixels that were ink in the reference


@dataclass(slots=True)
class _State:
    pts: int
    t_s: float
    luma: np.ndarray
    score: float


@dataclass(slots=True)
class SlideDetector:
    """Streaming slide-change detector (a `FrameConsumer`); see the module docstring for the rule."""

    settings: SlideSettings = field(default_factory=SlideSettings)
    changes: list[SlideChange] = field(default_factory=list)
    keyframes: list[tuple[int, float, float]] = field(default_factory=list)  # (pts, t_s, score) to keep
    _scene: int = -1
    _frames_in_scene: int = 0
    _prev: np.ndarray | None = None
    _stable_since: tuple[int, float] | None = None  # (pts, t_s) of the first frame of the current still run
    _ref: _State | None = None
    _first_state: _State | None = None  # the scene's first settled picture, kept until the scene changes
    _pending: tuple[int, float, int] | None = None  # (pts, t_s, frames before) of the first differing frame
    _last_t_s: float = 0.0
    _activity: np.ndarray | None = None  # per pixel: how often it changed lately (an exponential average)
    _calm: np.ndarray | None = None  # 255 where the picture is not busy (a speaker's video inset, a clip)

    def push(self, sf: SceneFrame) -> None:
        s = self.settings
        frame = sf.frame
        if frame.t_s - self._last_t_s < 1.0 / s.max_fps - 1e-6 and not sf.new_scene and self._prev is not None:
            self._frames_in_scene += 1
            return
        step_s = frame.t_s - self._last_t_s
        self._last_t_s = frame.t_s
        luma = frame.luma
        if sf.new_scene:
            self._scene, self._frames_in_scene = sf.scene_index, 0
            self._prev, self._ref, self._first_state, self._pending = None, None, None, None
            self._stable_since = None  # what keeps changing (a video inset) is remembered across cuts
        area = luma.size
        if self._activity is None or self._activity.shape != luma.shape:
            self._activity = np.zeros(luma.shape, np.float32)
        if self._prev is None:
            self._stable_since = (frame.pts, frame.t_s)
            busy = cv2.threshold(self._activity, s.busy_level * 255, 255, cv2.THRESH_BINARY)[1].astype(np.uint8)
            self._calm = cv2.bitwise_not(cv2.dilate(busy, _BUSY_KERNEL))
        else:
            assert self._activity is not None and self._calm is not None
            moved = _changed_mask(luma, self._prev, s.pixel_delta)
            # Pixels that keep changing (a video inset, a clip playing) are left out of every count.
            cv2.accumulateWeighted(moved, self._activity, min(1.0, step_s / s.busy_memory_s))
            busy = cv2.threshold(self._activity, s.busy_level * 255, 255, cv2.THRESH_BINARY)[1].astype(np.uint8)
            # Whole regions, not just their edges; once busy, left out for the rest of the scene.
            self._calm = cv2.bitwise_and(self._calm, cv2.bitwise_not(cv2.dilate(busy, _BUSY_KERNEL)))
            if cv2.countNonZero(cv2.bitwise_and(moved, self._calm)) > s.stable_area * area:
                self._stable_since = (frame.pts, frame.t_s)
        self._prev = luma
        settled = self._stable_since is not None and frame.t_s - self._stable_since[1] >= s.settle_s - 1e-6
        if self._ref is None:
            if settled:
                self._ref = self._settle(luma, frame.pts, frame.t_s)
                self._first_state = self._ref
        else:
            differs = self._changed_calm(luma, self._ref.luma) >= s.min_change_area * area
            if differs and self._pending is None:
                self._pending = (frame.pts, frame.t_s, self._frames_in_scene)
            elif not differs and settled:
                self._pending = None  # back to the reference (a pointer passing, a flash)
            if settled and self._pending is not None:
                self._decide(self._pending, self._settle(luma, frame.pts, frame.t_s))
        self._frames_in_scene += 1

    def _changed_calm(self, a: np.ndarray, b: np.ndarray) -> int:
        changed = _changed_mask(a, b, self.settings.pixel_delta)
        return int(cv2.countNonZero(changed if self._calm is None else cv2.bitwise_and(changed, self._calm)))

    def _settle(self, luma: np.ndarray, pts: int, t_s: float) -> _State:
        return _State(pts, t_s, luma, round(math.log1p(sharpness(luma)), 3))

    def _decide(self, pending: tuple[int, float, int], new: _State) -> None:
        s = self.settings
        assert self._ref is not None
        ref = self._ref
        self._pending = None
        self._ref = new
        transition_s = new.t_s - s.settle_s - pending[1]
        if transition_s > s.max_transition_s or flat_area(ref.luma, self._calm) < s.min_flat_area:
            self._first_state = None  # moving content, or not a slide: no event, a new reference
            return
        changed, removed = compare(ref.luma, new.luma, s.pixel_delta, self._calm)
        kind = "build" if removed <= s.max_removed_share else "slide"
        self.changes.append(
            SlideChange(pending[1], pending[0], kind, self._scene, pending[2], round(changed, 5), round(removed, 3))
        )
        if self._first_state is not None:
            self.keyframes.append((self._first_state.pts, self._first_state.t_s, self._first_state.score))
            self._first_state = None
        if kind == "build" and self.keyframes and new.t_s - self.keyframes[-1][1] < s.min_build_gap_s:
            last = self.changes[-2] if len(self.changes) > 1 else None
            if last is not None and last.kind == "build" and last.scene_index == self._scene:
                self.keyframes.pop()  # typing or drawing: keep the fuller state only
        self.keyframes.append((new.pts, new.t_s, new.score))

    @property
    def new_slides(self) -> list[SlideChange]:
        return [c for c in self.changes if c.kind == "slide"]

    @property
    def build_steps(self) -> list[SlideChange]:
        return [c for c in self.changes if c.kind == "build"]


def _changed_mask(a: np.ndarray, b: np.ndarray, delta: int) -> np.ndarray:
    return np.asarray(cv2.threshold(cv2.absdiff(a, b), delta, 255, cv2.THRESH_BINARY)[1])


def ink(luma: np.ndarray, delta: int) -> np.ndarray:
    """Pixels on or next to an edge (text strokes, drawings, photo texture): a 3x3 morphological gradient above
    `delta`, widened by one pixel."""
    gradient = cv2.morphologyEx(luma, cv2.MORPH_GRADIENT, _KERNEL)
    edges = cv2.threshold(gradient, delta, 255, cv2.THRESH_BINARY)[1]
    return np.asarray(cv2.dilate(edges, _KERNEL))


def flat_area(luma: np.ndarray, calm: np.ndarray | None = None) -> float:
    """Share of the picture (of its `calm` part) with almost no local gradient (slides and screens: most of it;
    camera footage: little)."""
    gradient = cv2.morphologyEx(luma, cv2.MORPH_GRADIENT, _KERNEL)
    flat = cv2.threshold(gradient, 6, 255, cv2.THRESH_BINARY_INV)[1]
    if calm is None:
        return float(cv2.countNonZero(flat)) / luma.size
    return float(cv2.countNonZero(cv2.bitwise_and(flat, calm))) / max(1, cv2.countNonZero(calm))


def compare(ref: np.ndarray, new: np.ndarray, delta: int, calm: np.ndarray | None = None) -> tuple[float, float]:
    """(share of the picture that changed, share of the changed pixels that were ink in `ref`), both counted
    where the picture is `calm` (everywhere when None)."""
    changed = _changed_mask(ref, new, delta)
    if calm is not None:
        changed = cv2.bitwise_and(changed, calm)
    n = int(cv2.countNonZero(changed))
    if not n:
        return 0.0, 0.0
    removed = int(cv2.countNonZero(cv2.bitwise_and(changed, ink(ref, 2 * delta))))
    return n / ref.size, removed / n


def split_scenes(
    scenes: list[Scene], keyframes: list[Keyframe], changes: Sequence[SlideChange], min_scene_s: float = 0.0
) -> tuple[list[Scene], list[Keyframe]]:
    """`scenes` split at every new slide (renumbered), `keyframes` moved to the scene they now fall in."""
    cuts: dict[int, list[SlideChange]] = {}
    for c in changes:
        if c.kind == "slide":
            cuts.setdefault(c.scene_index, []).append(c)
    if not cuts:
        return scenes, keyframes
    out: list[Scene] = []
    for scene in scenes:
        start, start_pts, frames_done = scene.start_s, scene.start_pts, 0
        for c in sorted(cuts.get(scene.index, []), key=lambda c: c.t_s):
            if c.t_s - start < min_scene_s or c.t_s >= scene.end_s:
                continue
            out.append(Scene(len(out), start, c.t_s, start_pts, c.frames_before - frames_done))
            start, start_pts, frames_done = c.t_s, c.pts, c.frames_before
        out.append(Scene(len(out), start, scene.end_s, start_pts, scene.frame_count - frames_done))
    starts = [s.start_s for s in out]
    moved = []
    for k in keyframes:
        index = max(0, int(np.searchsorted(starts, k.t_s + 1e-9, side="right")) - 1)
        moved.append(Keyframe(k.pts, k.t_s, index, k.score))
    return out, moved
