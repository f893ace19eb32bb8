"""Motion events for fixed cameras, from background subtraction on the shared analysis pass.

Frames are thinned to at most ``max_fps`` (12.5 by default: plenty for half-second events, half the cost at
25 fps), box-averaged to at most 160 px wide and fed to OpenCV's MOG2 background model (reset
at every cut, then given ``learn_s`` to learn the new background). A frame is *active* when the foreground,
after a 3x3 opening and the include/exclude zones, covers at least ``min_area`` of the picture. Active frames
closer than ``hold_s`` join into one event; events shorter than ``min_duration_s`` are dropped. Times are the
frames' PTS; the region is the union of the foreground's bounding boxes on the 0-1000 grid.

Moving cameras turn the whole picture into "foreground". A phase-correlation estimate of the global shift
against the frame ``_SHIFT_LAG`` frames earlier (slow pans add up) marks frames where the camera moved; they
never count as motion, and a scene in which the camera moves for more than ``_MOVING_SCENE`` of its frames
is not a fixed-camera scene at all: its events are dropped. Moving-camera footage therefore yields no flood
of events, and the detector reports how long the camera moved and how many scenes it set aside.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from videopipe.config import MotionSettings
from videopipe.media.decode import box_halve, halvings_for
from videopipe.scenes import SceneFrame

_WIDTH = 160
_SHIFT_LAG = 5
_MOVING_SCENE = 0.3


@dataclass(slots=True)
class _Open:
    start_s: float
    last_active_s: float
    box: list[int]  # x1, y1, x2, y2 in analysis pixels
    peak: float


@dataclass(slots=True)
class MotionDetector:
    settings: MotionSettings
    events: list[dict[str, Any]] = field(default_factory=list)
    camera_moving_s: float = 0.0
    moving_camera_scenes: int = 0
    frames: int = 0
    _scene_events: list[dict[str, Any]] = field(default_factory=list)
    _scene_frames: int = 0
    _scene_camera_frames: int = 0
    _recent: deque[np.ndarray] = field(default_factory=lambda: deque(maxlen=_SHIFT_LAG))
    _model: Any = None
    _learn_until: float = 0.0
    _open: _Open | None = None
    _prev_t: float = 0.0
    _step: float = 0.04
    _zone: np.ndarray | None = None
    _kernel: np.ndarray = field(default_factory=lambda: np.ones((3, 3), np.uint8))
    _shape: tuple[int, int] = (1, 1)

    def push(self, sf: SceneFrame) -> None:
        t = sf.frame.t_s
        if not sf.new_scene and self.frames and t - self._prev_t < 1.0 / self.settings.max_fps - 1e-6:
            return
        if self.frames:
            self._step = max(1e-3, t - self._prev_t) if t > self._prev_t else self._step
        self.frames += 1
        small = box_halve(sf.frame.luma, halvings_for(sf.frame.luma.shape[1], sf.frame.luma.shape[0], _WIDTH))
        if sf.new_scene or self._model is None:
            self._close(t)
            self._end_scene()
            s = self.settings
            self._model = cv2.createBackgroundSubtractorMOG2(
                history=s.history_frames, varThreshold=s.var_threshold, detectShadows=True
            )
            self._learn_until = t + s.learn_s
            self._recent.clear()
            if self._zone is None or self._zone.shape != small.shape:
                self._zone = self._zone_mask(small.shape)
        mask = self._model.apply(small)
        camera = self._camera_moved(small)
        self._recent.append(small)
        self._prev_t = t
        self._scene_frames += 1
        if camera:
            self.camera_moving_s += self._step
            self._scene_camera_frames += 1
        if t < self._learn_until:
            return
        fg: np.ndarray = cv2.morphologyEx((mask == 255).astype(np.uint8), cv2.MORPH_OPEN, self._kernel)
        if self._zone is not None:
            fg = fg * self._zone
        area = float(fg.mean())
        active = area >= self.settings.min_area and not camera
        if active:
            ys, xs = np.nonzero(fg)
            box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
            if self._open is None:
                self._open = _Open(t, t, box, area)
            else:
                o = self._open
                o.last_active_s, o.peak = t, max(o.peak, area)
                o.box = [min(o.box[0], box[0]), min(o.box[1], box[1]), max(o.box[2], box[2]), max(o.box[3], box[3])]
        elif self._open is not None and t - self._open.last_active_s > self.settings.hold_s:
            self._close(t)
        self._shape = (fg.shape[0], fg.shape[1])

    def finish(self, end_s: float) -> list[dict[str, Any]]:
        self._close(end_s)
        self._end_scene()
        return self.events

    def _end_scene(self) -> None:
        if self._scene_frames and self._scene_camera_frames / self._scene_frames > _MOVING_SCENE:
            self.moving_camera_scenes += 1
        else:
            self.events.extend(self._scene_events)
        self._scene_events, self._scene_frames, self._scene_camera_frames = [], 0, 0

    def _close(self, now_s: float) -> None:
        o, self._open = self._open, None
        if o is None:
            return
        end = min(now_s, o.last_active_s + self._step)
        if end - o.start_s < self.settings.min_duration_s:
            return
        h, w = self._shape
        bbox = [
            round(o.box[0] * 1000 / w),
            round(o.box[1] * 1000 / h),
            round(o.box[2] * 1000 / w),
            round(o.box[3] * 1000 / h),
        ]
        self._scene_events.append({
            "start_s": round(o.start_s, 3), "end_s": round(end, 3), "label": "motion",
            "description": f"movement in the {_region_words(bbox)} of the picture", "bbox": bbox,
            "peak_area": round(o.peak, 4), "source": "motion",
        })  # fmt: skip

    def _camera_moved(self, small: np.ndarray) -> bool:
        if not self._recent or self._recent[0].shape != small.shape:
            return False
        (dx, dy), response = cv2.phaseCorrelate(self._recent[0].astype(np.float32), small.astype(np.float32))
        return response > 0.2 and (dx * dx + dy * dy) ** 0.5 >= self.settings.camera_shift_px

    def _zone_mask(self, shape: tuple[int, ...]) -> np.ndarray | None:
        s = self.settings
        if not s.include_zones and not s.exclude_zones:
            return None
        h, w = shape[:2]
        mask = np.zeros((h, w), np.uint8) if s.include_zones else np.ones((h, w), np.uint8)
        for zone, value in [(z, 1) for z in s.include_zones] + [(z, 0) for z in s.exclude_zones]:
            x1, y1, x2, y2 = (round(v * n / 1000) for v, n in zip(zone, (w, h, w, h), strict=True))
            mask[y1:y2, x1:x2] = value
        return mask


def _region_words(bbox: list[int]) -> str:
    cx, cy = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
    horizontal = "left" if cx < 333 else "right" if cx > 667 else "centre"
    vertical = "top" if cy < 333 else "bottom" if cy > 667 else "middle"
    if (bbox[2] - bbox[0]) > 700 and (bbox[3] - bbox[1]) > 700:
        return "whole"
    return "centre" if (horizontal, vertical) == ("centre", "middle") else f"{vertical} {horizontal}"
