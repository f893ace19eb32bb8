"""Hard-cut detection on the shared analysis pass.

Each frame is reduced to a tiny signature (luma 64-127 px wide plus both chroma planes, box-averaged). The
change score of a frame is the mean absolute difference of its signature from the previous frame's, in 0-255
units, summed over Y, U and V. A frame starts a new scene when its change score

- is at least ``min_change`` (absolute: rules out noise and slow drifts),
- is the largest in a window of ``window_frames`` on each side and ``min_ratio`` times the mean of the others
  (relative: a cut is one sharp spike, camera motion raises every score around it),
- is not a flash: every frame of the window before it must differ from every frame from it on (after a
  flash, a glitch or a passing obstruction the picture comes back),
- comes at least ``min_scene_frames`` frames and ``min_scene_s`` after the previous cut (shots of two frames are
  kept; a single-frame flash is refused by the rule above).

Gradual transitions (dissolves, fades through black or white) are found on the same pass from a 16x9 YUV thumbnail
of each frame (`_Gradual`): at several scales h (frames), the thumbnail h frames after a point must differ from
the one h frames before it by at least ``gradual_min_change``, ``gradual_ratio`` times more than across the
neighbouring windows of the same length (the shots on both sides are steady relative to the change; a camera pan
changes every window alike), no single frame step may carry most of it (that is a hard cut), and the frames in
between must lie on the straight line between the two thumbnails (a blend), or on two lines meeting at a uniform
frame (a fade through black, white or any colour). The scene starts at the middle of the blend (or of the uniform
frames), and `Scene.transition_in` carries the span of blended frames; frames inside it are tagged
`in_transition` so that no keyframe is taken there.

The decisions need look-ahead (``window_frames`` for cuts, three times the largest scale for transitions), so
`CutDetector` releases frames with that delay, each tagged with its scene; everything downstream sees scenes as
final. ``detector="transnetv2"`` replaces both rules by TransNetV2 (`videopipe.scenes_transnet`, GPU workers).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from videopipe.config import SceneSettings
from videopipe.media.decode import AnalysisFrame, box_halve, chroma_halvings, halvings_for

if TYPE_CHECKING:
    from videopipe.scenes_transnet import TransNetStream

_SIG_LONG_SIDE = 64


@dataclass(slots=True)
class SceneFrame:
    """A frame released by the detector, with the scene it belongs to."""

    frame: AnalysisFrame
    scene_index: int
    new_scene: bool  # first frame of its scene
    change: float  # change score against the previous frame (a cheap motion measure)
    in_transition: bool = False  # a blended frame of a dissolve or fade (never a keyframe)


@dataclass(slots=True)
class Scene:
    index: int
    start_s: float
    end_s: float
    start_pts: int
    frame_count: int
    # (start, end) of the dissolve or fade that leads into this scene; None after a hard cut.
    transition_in: tuple[float, float] | None = None


@dataclass(slots=True)
class _Pending:
    frame: AnalysisFrame
    sig: tuple[np.ndarray, np.ndarray, np.ndarray]
    change: float
    number: int = 0  # position among pushed frames


_THUMB = (16, 9)
_UNIFORM_STD = 6.0  # luma standard deviation (0-255) below which a thumbnail is one flat colour


def thumbnail(sig: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Y, U and V at 16x9 each, float32, concatenated (432 values)."""
    return np.concatenate([cv2.resize(p, _THUMB, interpolation=cv2.INTER_AREA).astype(np.float32).ravel() for p in sig])


def _thumb_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The same units as `sig_distance`: the mean absolute difference of each plane, summed over Y, U and V."""
    return 3.0 * float(cv2.norm(a, b, cv2.NORM_L1)) / a.size


@dataclass(slots=True)
class Transition:
    boundary: int  # number of the first frame of the new scene
    start: int  # first blended frame
    end: int  # last blended frame
    score: float
    kind: str  # "dissolve" or "fade"
    from_flat: bool = False  # a fade in from a flat colour (half of a fade through black or white)
    to_flat: bool = False  # a fade out to a flat colour


class _Gradual:
    """Finds dissolves and fades on a stream of thumbnails; see the module docstring."""

    def __init__(self, settings: SceneSettings) -> None:
        self.s = settings
        self.scales = [h for h in (2, 4, 8, 16, 24) if h <= settings.max_transition_frames // 2]
        self.h_max = max(self.scales)
        self.lag = 3 * self.h_max + 2  # frames of look-ahead the decisions need
        self._size = 4 * self.h_max + 1  # ring buffers, indexed by frame number modulo their size
        self._thumbs = np.zeros((self._size, 3 * _THUMB[0] * _THUMB[1]), np.float32)
        self._steps = np.zeros(self._size, np.float64)
        self._flat = np.zeros(self._size, bool)
        self._count = 0
        self.events: list[Transition] = []  # not yet released, boundary order
        self.done_until = -1  # last frame of the transitions already taken or passed

    def push(self, thumb: np.ndarray) -> None:
        n = self._count
        step = _thumb_distance(thumb, self._thumbs[(n - 1) % self._size]) if n else 0.0
        self._thumbs[n % self._size] = thumb
        self._steps[n % self._size] = step
        _, std = cv2.meanStdDev(thumb[: _THUMB[0] * _THUMB[1]])
        self._flat[n % self._size] = float(std[0, 0]) < _UNIFORM_STD
        self._count += 1
        n = self._count - 1
        for h in self.scales:
            centre = n - 2 * h
            # Long windows move slowly: every (h/4)th centre is enough for them (half the cost of this rule).
            if centre - 2 * h >= 0 and centre % max(1, h // 4) == 0:
                found = self._check(centre, h)
                if found is not None:
                    self._add(found)

    def _at(self, number: int) -> int:
        return number % self._size

    def _held(self, number: int) -> bool:
        return self._count - self._size <= number < self._count

    def _check(self, c: int, h: int) -> Transition | None:
        s = self.s
        th = self._thumbs
        a, b = th[self._at(c - h)], th[self._at(c + h)]
        g = _thumb_distance(a, b)
        if g < s.gradual_min_change:
            return None
        before = _thumb_distance(th[self._at(c - 2 * h)], a)
        if g < s.gradual_ratio * (before + 1.0):
            return None
        after = _thumb_distance(b, th[self._at(c + 2 * h)])
        score = g / (max(before, after) + 1.0)
        if score < s.gradual_ratio:
            return None
        idx = np.arange(c - h, c + h + 1) % self._size
        steps = self._steps[idx[1:]]
        if float(steps.max()) > 0.5 * float(steps.sum()):  # one step carries most of it: a hard cut, not a blend
            return None
        frames = th[idx]
        luma_std = frames[:, : _THUMB[0] * _THUMB[1]].std(axis=1)
        m = int(np.argmin(luma_std))
        if 0 < m < 2 * h and luma_std[m] < _UNIFORM_STD and luma_std[0] > 2 * _UNIFORM_STD < luma_std[-1]:
            # A fade through a flat colour: two blends meeting at the flattest frame.
            flat = [j for j in range(len(frames)) if luma_std[j] < _UNIFORM_STD]
            first, last = flat[0], flat[-1]
            ok_out, lo, _ = _blend_span(frames[: first + 1], s.gradual_max_residual)
            ok_in, _, hi = _blend_span(frames[last:], s.gradual_max_residual)
            if not (ok_out and ok_in):
                return None
            base = c - h
            return Transition(base + (first + last + 1) // 2, base + lo, base + last + hi, score, "fade")
        ok, lo, hi = _blend_span(frames, s.gradual_max_residual)
        if not ok:
            return None
        alphas = _alphas(frames)
        mid = int(np.argmax(alphas >= 0.5))
        base = c - h
        to_flat = bool(luma_std[-1] < min(_UNIFORM_STD, 0.3 * luma_std[0]))
        from_flat = bool(luma_std[0] < min(_UNIFORM_STD, 0.3 * luma_std[-1]))
        if to_flat:  # a fade out: the new scene starts after it (mid-way through the flat frames if a fade in follows)
            mid = min(hi + 1, len(frames) - 1)
        elif from_flat:
            mid = lo
        return Transition(base + max(mid, lo), base + lo, base + hi, score, "dissolve", from_flat, to_flat)

    def _flat_between(self, e: Transition, t: Transition) -> bool:
        """Whether some frame between two blends is one flat colour (black, white...)."""
        if not (self._held(e.end) and self._held(t.start)):
            return False
        return bool(self._flat[np.arange(e.end, t.start + 1) % self._size].any())

    def _add(self, t: Transition) -> None:
        if t.start <= self.done_until:
            return
        for i, e in enumerate(self.events):
            if 0 <= t.start - e.end <= 2 * self.h_max and (e.to_flat or t.from_flat or self._flat_between(e, t)):
                # A fade out, then a fade in: one fade through that colour; the scene starts mid-way.
                boundary = (e.end + t.start + 1) // 2
                self.events[i] = Transition(boundary, e.start, t.end, max(e.score, t.score), "fade", False, False)
                return
        overlapping = [e for e in self.events if t.start <= e.end and e.start <= t.end]
        if any(e.score >= t.score for e in overlapping):  # the same transition, better seen at another scale
            return
        self.events = sorted([e for e in self.events if e not in overlapping] + [t], key=lambda x: x.boundary)


def _alphas(frames: np.ndarray) -> np.ndarray:
    delta = frames[-1] - frames[0]
    denom = float(delta @ delta) or 1.0
    return np.asarray((frames - frames[0]) @ delta / denom)


def _blend_span(frames: np.ndarray, max_residual: float) -> tuple[bool, int, int]:
    """Whether `frames` move along the line from the first to the last (a blend), and the span of blended frames
    within them (indexes of the first and last frame that are neither end)."""
    if len(frames) < 3:
        return True, min(1, len(frames) - 1), max(0, len(frames) - 2)
    alphas = _alphas(frames)
    delta = frames[-1] - frames[0]
    residual = np.abs(frames - frames[0] - alphas[:, None] * delta[None, :]).mean(axis=1)
    scale = float(np.abs(delta).mean()) or 1.0
    if float(residual.max()) > max_residual * scale:
        return False, 0, 0
    if np.any(np.diff(alphas) < -0.15):  # a blend only goes one way
        return False, 0, 0
    moving = np.nonzero((alphas > 0.06) & (alphas < 0.94))[0]
    if len(moving) == 0:
        return False, 0, 0
    return True, int(moving[0]), int(moving[-1])


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
    """Streaming scene detector (hard cuts and gradual transitions); see the module docstring for the rules."""

    def __init__(self, settings: SceneSettings | None = None) -> None:
        self.settings = settings or SceneSettings()
        self._w = self.settings.window_frames
        self._tn: TransNetStream | None = None
        if self.settings.detector == "transnetv2":
            from videopipe.scenes_transnet import TransNetStream, load_detector

            self._tn = TransNetStream(load_detector(self.settings.transnet_threads, self.settings.transnet_device))
        self._gradual = _Gradual(self.settings) if self.settings.gradual and self._tn is None else None
        self._delay = max(self._w, self._gradual.lag if self._gradual else 0)
        # Frames j-w-1 .. j+delay around the frame j being decided (j-1 first at the decision point).
        self._pending: deque[_Pending] = deque()
        self._released: deque[_Pending] = deque(maxlen=self._w)  # the last frames released
        self._prev_sig: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._scene_index = -1
        self._last_cut_s = -float("inf")
        self._last_cut_number = -(10**9)
        self._pushed = 0
        self._span: tuple[int, int] | None = None  # frame numbers of the last transition taken
        self._span_s: tuple[float, float] | None = None
        self._times: deque[tuple[int, float]] = deque(maxlen=max(self._delay, 100) + 2)  # (number, time) released
        self.scenes: list[Scene] = []
        self._last_t_s = 0.0
        self._last_step_s = 0.0

    def push(self, frame: AnalysisFrame) -> Iterator[SceneFrame]:
        sig = signature(frame)
        change = sig_distance(sig, self._prev_sig) if self._prev_sig is not None else 0.0
        self._prev_sig = sig
        if self._gradual is not None:
            self._gradual.push(thumbnail(sig))
        if self._tn is not None:
            self._tn.push(frame)
        self._pending.append(_Pending(frame, sig, change, self._pushed))
        self._pushed += 1
        if frame.t_s > self._last_t_s:
            self._last_step_s = frame.t_s - self._last_t_s
        self._last_t_s = frame.t_s
        if self._tn is not None:
            while self._pending and self._tn.known(self._pending[0].number + 1):
                yield self._release()
        elif len(self._pending) > self._delay:
            yield self._release()

    def flush(self) -> Iterator[SceneFrame]:
        if self._tn is not None:
            self._tn.finish()
        while self._pending:
            yield self._release()

    def finish(self, end_s: float | None = None) -> list[Scene]:
        """Close the last scene. `end_s` defaults to the end of the last frame."""
        if self.scenes:
            last = self.scenes[-1]
            last.end_s = end_s if end_s is not None else self._last_t_s + self._last_step_s
            last.end_s = max(last.end_s, last.start_s)
        return self.scenes

    def _frame_time(self, number: int) -> float:
        """The time of a frame released not long ago or still pending (the end of the video past the last)."""
        for n, t in self._times:
            if n == number:
                return t
        for p in self._pending:
            if p.number == number:
                return p.frame.t_s
        return self._last_t_s + self._last_step_s

    def _release(self) -> SceneFrame:
        cur = self._pending.popleft()
        self._times.append((cur.number, cur.frame.t_s))
        transition = self._transition_at(cur.number) if self._tn is None else self._transnet_at(cur)
        starts = not self._released or transition is not None or (self._tn is None and self._is_cut(cur))
        if transition is not None:
            self._span_s = (self._frame_time(transition.start), self._frame_time(transition.end + 1))
        if starts:
            self._scene_index += 1
            if self.scenes:
                self.scenes[-1].end_s = cur.frame.t_s
                self._last_cut_s = cur.frame.t_s
                self._last_cut_number = cur.number
            span = self._span_s if transition is not None and transition.kind != "cut" and self.scenes else None
            self.scenes.append(Scene(self._scene_index, cur.frame.t_s, cur.frame.t_s, cur.frame.pts, 0, span))
        self.scenes[-1].frame_count += 1
        self._released.append(cur)
        return SceneFrame(cur.frame, self._scene_index, starts, cur.change, self._in_transition(cur.number))

    def _transnet_at(self, cur: _Pending) -> Transition | None:
        """TransNetV2: the new scene starts right after a run of frames above the threshold (one frame: a cut;
        several: a gradual transition over the run)."""
        tn = self._tn
        assert tn is not None
        threshold = self.settings.transnet_threshold
        if cur.number == 0 or tn.prob(cur.number) > threshold or tn.prob(cur.number - 1) <= threshold:
            return None
        if cur.number - self._last_cut_number < self.settings.min_scene_frames:
            return None
        start = cur.number - 1
        while start - 1 > self._last_cut_number and tn.prob(start - 1) > threshold:
            start -= 1
        if start == cur.number - 1:  # a hard cut
            self._span = None
            return Transition(cur.number, cur.number, cur.number - 1, 1.0, "cut")
        self._span = (start, cur.number - 1)
        return Transition(cur.number, start, cur.number - 1, 1.0, "gradual")

    def _in_transition(self, number: int) -> bool:
        if self._tn is not None:
            return self._tn.prob(number) > self.settings.transnet_threshold
        if self._span is not None and self._span[0] <= number <= self._span[1]:
            return True
        return self._gradual is not None and any(e.start <= number <= e.end for e in self._gradual.events)

    def _transition_at(self, number: int) -> Transition | None:  # the shared pass's rule
        """The transition whose boundary is this frame, if one is confirmed (events before it are dropped)."""
        g = self._gradual
        if g is None:
            return None
        while g.events and g.events[0].boundary < number:
            g.done_until = max(g.done_until, g.events.pop(0).end)  # passed without being taken
        if g.events and g.events[0].boundary == number:
            event = g.events.pop(0)
            g.done_until = max(g.done_until, event.end)
            if self._released and number - self._last_cut_number >= self.settings.min_scene_frames:
                self._span = (event.start, event.end)
                return event
        return None

    def _is_cut(self, cur: _Pending) -> bool:
        s = self.settings
        score = cur.change
        if score < s.min_change or cur.frame.t_s - self._last_cut_s < s.min_scene_s:
            return False
        if cur.number - self._last_cut_number < s.min_scene_frames:
            return False
        if self._span is not None and self._span[0] <= cur.number <= self._span[1]:
            return False  # inside a dissolve or fade already taken as the boundary
        ahead = list(itertools.islice(self._pending, self._w))
        window = [*self._released, cur, *ahead]
        k = len(self._released)
        others = [p.change for i, p in enumerate(window) if i != k and not _isolated_spike(window, i, s.min_change)]
        near = [window[i].change for i in (k - 1, k + 1) if 0 <= i < len(window)]
        if any(c > score for c in near) or (others and max(others) > score):
            return False
        if others and score < s.min_ratio * (sum(others) / len(others) + 0.5):
            return False
        # Flash filter: after a flash or a short glitch the picture comes back.
        floor = max(s.min_change, 0.4 * score)
        after = [cur, *ahead]
        return all(sig_distance(a.sig, b.sig) >= floor for a in self._released for b in after)


def _isolated_spike(window: list[_Pending], i: int, min_change: float) -> bool:
    """Another cut two or more frames away (a short shot), not camera motion: a spike over both its neighbours."""
    c = window[i].change
    left = window[i - 1].change if i > 0 else 0.0
    right = window[i + 1].change if i + 1 < len(window) else 0.0
    return c >= min_change and c > 3 * (left + 0.5) and c > 3 * (right + 0.5)


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
