"""`analyze`: one video file in, ``analysis.json`` and keyframe JPEGs out, in-process, with no servers.

The whole pipeline as a plain function: probe, the one shared decode pass (cuts, keyframe scoring, motion and
any extra per-frame consumers), full-resolution grabs at the chosen times, speech, on-screen text, then
understanding (Qwen3-VL, or extractive chapters without a model). Results are staged in a hidden folder and
moved into place only when complete, so a failed or interrupted run never leaves a half-written result or
damages an earlier one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import cv2
from pydantic import BaseModel, ConfigDict, ValidationError

from videopipe import __version__
from videopipe.config import Settings
from videopipe.errors import BadRequest, UndecodableVideo
from videopipe.keyframes import Keyframe, KeyframeSelector
from videopipe.media.decode import describe_resolution, iter_analysis_frames
from videopipe.media.grab import grab_frames
from videopipe.media.probe import VideoInfo, check_complete, probe
from videopipe.perception.motion import MotionDetector
from videopipe.perception.stages import run_ocr, run_speech
from videopipe.progress import NullProgress, Progress
from videopipe.scenes import CutDetector, Scene, SceneFrame
from videopipe.timefmt import fmt_time
from videopipe.understanding import understand
from videopipe.vlm import BackendChoice, select_backend

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


class FrameConsumer(Protocol):
    """Anything that wants to look at every analysis frame (motion detection, ...) plugs in here."""

    def push(self, sf: SceneFrame) -> None: ...


PROFILES = {
    # What each kind of footage needs: lectures speak and show text; fixed cameras move.
    "general": {"asr": True, "ocr": True, "motion": True},
    "lecture": {"asr": True, "ocr": True, "motion": False},
    "surveillance": {"asr": False, "ocr": False, "motion": True},
}


@dataclass(slots=True)
class AnalyzeOptions:
    vlm: str | None = None  # None: the settings' choice (VIDEOPIPE_VLM, default auto)
    asr: bool = True
    ocr: bool = True
    motion: bool = True
    dump_prompt: Path | None = None  # write the exact prompts sent to the model here
    profile: str = "general"

    @classmethod
    def for_profile(
        cls, profile: str, *, no_asr: bool = False, no_ocr: bool = False, no_motion: bool = False, **kwargs: Any
    ) -> AnalyzeOptions:
        """The profile's stages, minus any switched off explicitly."""
        base = PROFILES[profile]
        return cls(
            asr=base["asr"] and not no_asr,
            ocr=base["ocr"] and not no_ocr,
            motion=base["motion"] and not no_motion,
            profile=profile,
            **kwargs,
        )


class AnalysisOptions(BaseModel):
    """How to analyse a video, as a job stores it and the API accepts it. Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")

    profile: Literal["general", "lecture", "surveillance"] = "general"
    vlm: Literal["auto", "none", "transformers", "openai"] | None = None
    asr: bool = True
    ocr: bool = True
    motion: bool = True


def check_job_options(options: dict[str, Any]) -> dict[str, Any]:
    """Job options checked against `AnalysisOptions` (strictly: `true`, not `1`), whichever door they came
    through (API, batches, CLI): a wrong one must fail at submission, not inside a worker. Returned unchanged."""
    try:
        AnalysisOptions.model_validate(options, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise BadRequest(f"options: {where + ': ' if where else ''}{first.get('msg')}") from None
    return options


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
) -> PassResult:
    """The single low-resolution decode pass: cuts, keyframe scores and every consumer, in one go."""
    progress = progress or NullProgress()
    warnings: list[str] = []

    def _warn(message: str) -> None:
        warnings.append(message)
        (warn or log.warning)(message)

    cv2.setNumThreads(settings.analysis.opencv_threads)
    detector = CutDetector(settings.scenes)
    selector = KeyframeSelector(settings.keyframes)
    sinks: list[Callable[[SceneFrame], None]] = [selector.push, *(c.push for c in consumers)]
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
    return PassResult(info, scenes, selector.select(scenes), frames, decode_s, warnings)


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


def default_out_dir(video: str | os.PathLike[str]) -> Path:
    return Path.cwd() / f"{Path(video).name}.videopipe"


def analyze(
    video: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    settings: Settings | None = None,
    options: AnalyzeOptions | None = None,
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
    consumers: Sequence[FrameConsumer] = (),
) -> dict[str, Any]:
    """Analyse `video` and write ``analysis.json`` and ``keyframes/`` into `out_dir`. Returns the document."""
    settings = settings or Settings()
    options = options or AnalyzeOptions()
    progress = progress or NullProgress()
    choice = select_backend(settings, options.vlm)  # before any work: a wrong option fails at once
    info = probe(video, settings.limits)
    log.info("analysis resolution %s for %dx%d", describe_resolution(info, settings.analysis), info.width, info.height)
    motion = MotionDetector(settings.motion) if options.motion else None
    result = run_pass(info, settings, [*consumers, *([motion] if motion else [])], progress, warn)
    say = warn or log.warning

    out = Path(out_dir) if out_dir is not None else default_out_dir(video)
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".staging-{uuid.uuid4().hex[:8]}"
    (staging / "keyframes").mkdir(parents=True)
    try:
        started = time.perf_counter()
        images = _write_keyframes(info, result.keyframes, staging / "keyframes", settings, progress)
        document = build_document(result, images, options)
        stages = document["run"]["stages"]
        stages["keyframes"] = {"status": "done", "seconds": round(time.perf_counter() - started, 2)}
        if motion is not None:
            document["events"] = motion.finish(document["video"]["duration_s"])
            stages["motion"] = {
                "status": "done",
                "events": len(document["events"]),
                "camera_moving_s": round(motion.camera_moving_s, 2),
                "moving_camera_scenes_skipped": motion.moving_camera_scenes,
            }
        else:
            stages["motion"] = {"status": "off"}
        document["transcript"], stages["speech"] = run_speech(info, settings, options.asr, progress, say)
        document["ocr"], stages["ocr"] = run_ocr(document, staging, settings, options.ocr, progress, say)
        started = time.perf_counter()
        _understand(document, staging, choice, settings, options, progress, warn)
        stages["understand"] = {
            "status": "done",
            "backend": document["vlm"]["backend"],
            "seconds": round(time.perf_counter() - started, 2),
        }
        (staging / "analysis.json").write_text(json.dumps(document, indent=2) + "\n")
        _commit(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return document


def _understand(
    doc: dict[str, Any],
    base_dir: Path,
    choice: BackendChoice,
    settings: Settings,
    options: AnalyzeOptions,
    progress: Progress,
    warn: Callable[[str], None] | None,
) -> None:
    result = understand(doc, base_dir, choice, settings, progress, warn)
    doc["chapters"], doc["tags"], doc["vlm"] = result.chapters, result.tags, result.vlm
    doc["events"] = sorted(doc["events"] + result.events, key=lambda e: (e["start_s"], e["end_s"]))
    for scene in doc["scenes"]:
        if scene["index"] in result.captions:
            scene["caption"] = result.captions[scene["index"]]
    if options.dump_prompt is not None:
        separator = "\n\n" + "=" * 100 + "\n\n"
        body = separator.join(result.prompts) if result.prompts else f"(no prompt sent: {result.vlm.get('reason')})"
        options.dump_prompt.write_text(body + "\n")


def _write_keyframes(
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


def _commit(staging: Path, out: Path) -> None:
    """Swap the staged results in: keyframes folder first, then the document that points at it."""
    target = out / "keyframes"
    old = out / f".old-keyframes-{uuid.uuid4().hex[:8]}"
    if target.exists():
        target.rename(old)
    (staging / "keyframes").rename(target)
    os.replace(staging / "analysis.json", out / "analysis.json")
    shutil.rmtree(old, ignore_errors=True)
