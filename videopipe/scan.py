"""The single low-resolution decode pass (cuts, keyframe scores and any per-frame consumer), the full-resolution
keyframe grabs, and the analysis document (schema 1) they start."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2

from videopipe import __version__
from videopipe.config import Settings
from videopipe.errors import UndecodableVideo
from videopipe.keyframes import Keyframe, KeyframeSelector
from videopipe.media.decode import iter_analysis_frames
from videopipe.media.grab import grab_frames
from videopipe.media.probe import VideoInfo, check_complete
from videopipe.options import AnalyzeOptions
from videopipe.perception.slides import SlideDetector, split_scenes
from videopipe.progress import NullProgress, Progress
from videopipe.scenes import CutDetector, Scene, SceneFrame
from videopipe.schema import SCHEMA_VERSION
from videopipe.timefmt import fmt_time

log = logging.getLogger(__name__)


class FrameConsumer(Protocol):
    """Anything that wants to look at every analysis frame (motion detection, ...) plugs in here."""

    def push(self, sf: SceneFrame) -> None: ...


@dataclass(slots=True)
class PassResult:
    info: VideoInfo
    scenes: list[Scene]
    keyframes: list[Keyframe]
    frames: int
    decode_s: float
    warnings: list[str] = field(default_factory=list)


def run_pass(
    info: VideoInfo,
    settings: Settings,
    consumers: Sequence[FrameConsumer] = (),
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
    slides: SlideDetector | None = None,
) -> PassResult:
    """The single low-resolution decode pass: cuts, keyframe scores and every consumer, in one go. `slides`:
    new slides inside a scene split it, and every slide state is a keyframe."""
    progress = progress or NullProgress()
    warnings: list[str] = []

    def _warn(message: str) -> None:
        warnings.append(message)
        (warn or log.warning)(message)

    cv2.setNumThreads(settings.analysis.opencv_threads)
    detector = CutDetector(settings.scenes)
    selector = KeyframeSelector(settings.keyframes)
    sinks: list[Callable[[SceneFrame], None]] = [selector.push, *(c.push for c in consumers)]
    if slides is not None:
        sinks.append(slides.push)
    progress.start("scan", info.duration_s or 1.0)
    started = time.perf_counter()
    frames = 0
    next_report = 0.0

    def feed(released: Any) -> None:
        for sf in released:
            for sink in sinks:
                sink(sf)

    for frame in iter_analysis_frames(info, settings.analysis, _warn, settings.limits):
        feed(detector.push(frame))
        frames += 1
        if frame.t_s >= next_report:
            progress.update(min(frame.t_s, info.duration_s or frame.t_s))
            next_report = frame.t_s + 0.5
    feed(detector.flush())
    decode_s = time.perf_counter() - started
    if frames == 0:
        raise UndecodableVideo(
            f"{Path(info.path).name}: not one frame could be decoded; the file is damaged, re-export or re-encode it"
        )
    scenes = detector.finish()
    last_end = scenes[-1].end_s
    check_complete(Path(info.path).name, info.container, info.declared_duration_s, last_end, Path(info.path).suffix)
    if info.duration_s and last_end < info.duration_s and info.duration_s - last_end < 2.0:
        scenes[-1].end_s = info.duration_s  # the container's duration includes the last frame's length
    progress.update(info.duration_s or last_end)
    keyframes = selector.select(scenes, slides.keyframes if slides is not None else ())
    if slides is not None:
        scenes, keyframes = split_scenes(scenes, keyframes, slides.changes, settings.scenes.min_scene_s)
    return PassResult(info, scenes, keyframes, frames, decode_s, warnings)


def _r(t: float) -> float:
    return round(t, 6)


def build_document(result: PassResult, images: dict[int, str], options: AnalyzeOptions) -> dict[str, Any]:
    info = result.info
    duration = max(info.duration_s, result.scenes[-1].end_s if result.scenes else 0.0)
    return {
        "schema": SCHEMA_VERSION,
        "video": {
            "path": info.path,
            "duration_s": _r(duration),
            "fps": round(info.fps, 6),
            "width": info.width,
            "height": info.height,
            "vfr": info.vfr,
            "has_audio": info.has_audio,
            "real_fps": round(info.real_fps, 6),
            "frame_count": result.frames,
            "codec": info.codec,
            "rotation": info.rotation,
            "size_bytes": info.size_bytes,
        },
        "scenes": [
            {
                "index": s.index,
                "start_s": _r(s.start_s),
                "end_s": _r(s.end_s),
                "start": fmt_time(s.start_s),
                "end": fmt_time(s.end_s),
                # A dissolve or fade into this scene: its span (the scene starts in its middle); None after a cut.
                "transition": [_r(s.transition_in[0]), _r(s.transition_in[1])] if s.transition_in else None,
            }
            for s in result.scenes
        ],
        "keyframes": [
            {
                "t_s": _r(k.t_s),
                "scene_index": k.scene_index,
                "image": images[k.pts],
                "time": fmt_time(k.t_s),
                "score": k.score,
            }
            for k in result.keyframes
            if k.pts in images
        ],
        "transcript": [],
        "ocr": [],
        "chapters": [],
        "events": [],
        "tags": [],
        "vlm": None,
        "warnings": result.warnings,
        "run": {
            "videopipe": __version__,
            "frames_decoded": result.frames,
            "scan_s": round(result.decode_s, 3),
            "scan_fps": round(result.frames / result.decode_s, 1) if result.decode_s else None,
            "profile": options.profile,
            "stages": {"scan": {"status": "done", "seconds": round(result.decode_s, 2)}},
        },
    }


def write_keyframes(
    info: VideoInfo, keyframes: list[Keyframe], folder: Path, settings: Settings, progress: Progress
) -> dict[int, str]:
    progress.start("keyframes", len(keyframes))
    images: dict[int, str] = {}
    for n, grabbed in enumerate(grab_frames(info, [k.pts for k in keyframes], settings.limits), start=1):
        name = f"{n:05d}_{round(grabbed.t_s * 1000):09d}ms.jpg"
        grabbed.image.save(folder / name, "JPEG", quality=settings.keyframes.jpeg_quality)
        images[grabbed.pts] = f"keyframes/{name}"
        progress.update(n)
    return images
